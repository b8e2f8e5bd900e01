from django.urls import path

from sites import views

app_name = "sites"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.create, name="create"),
    # The licence holder and what the MHRA must be told (before "<code>/": codes are upper-case).
    path("control-site/", views.control, name="control"),
    path("control-site/edit/", views.control_edit, name="control_edit"),
    path("control-site/qps/add/", views.qp_add, name="qp_add"),
    path("control-site/qps/<int:pk>/remove/", views.qp_remove, name="qp_remove"),
    path("mhra/", views.mhra_log, name="notifications"),
    path("mhra/<int:pk>/sent/", views.notification_sent, name="notification_sent"),
    # Every site at once (SO-07).
    path("oversight/", views.oversight, name="oversight"),
    # One site
    path("<str:code>/", views.detail, name="detail"),
    path("<str:code>/edit/", views.edit, name="edit"),
    path("<str:code>/move/", views.move, name="move"),
    path("<str:code>/lifecycle/<str:action>/", views.transition, name="transition"),
    path("<str:code>/checklist/<slug:key>/", views.checklist_item, name="item"),
    path("<str:code>/checklist/<slug:key>/evidence/", views.evidence, name="evidence"),
    path(
        "<str:code>/checklist/<slug:key>/evidence/file/", views.evidence_file, name="evidence_file"
    ),
    path("<str:code>/checklist/<slug:key>/sign-off/", views.signoff, name="signoff"),
    path("<str:code>/members/add/", views.member_add, name="member_add"),
    path("<str:code>/members/<int:pk>/end/", views.member_end, name="member_end"),
    path("<str:code>/equipment/add/", views.equipment_add, name="equipment_add"),
    path("<str:code>/equipment/<int:pk>/", views.equipment_edit, name="equipment_edit"),
    path("<str:code>/audits/add/", views.audit_add, name="audit_add"),
    path("<str:code>/audits/<int:pk>/", views.audit, name="audit"),
    path("<str:code>/audits/<int:pk>/complete/", views.audit_complete, name="audit_complete"),
    path("<str:code>/audits/<int:pk>/findings/", views.finding_add, name="finding_add"),
]
