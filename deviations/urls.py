"""Deviation and CAPA pages. Fixed paths come before `<str:number>/`, which would otherwise take
them."""

from django.urls import path

from deviations import views
from deviations.views import changes as change_views
from deviations.views import complaints as complaint_views
from deviations.views import oos as oos_views

app_name = "deviations"

urlpatterns = [
    path("", views.index, name="index"),
    path("raise/", views.raise_deviation, name="raise"),
    path("trends/", views.trends, name="trends"),
    path("signal/<int:signal_id>/", views.deviation_of_signal, name="of-signal"),
    path("capa/", views.capa_index, name="capa-index"),
    path("capa/<str:number>/", views.capa_detail, name="capa-detail"),
    path("capa/<str:number>/actions/", views.capa_action_add, name="capa-action-add"),
    path(
        "capa/<str:number>/actions/<int:pk>/done/", views.capa_action_done, name="capa-action-done"
    ),
    path("capa/<str:number>/effectiveness/", views.capa_effectiveness, name="capa-effectiveness"),
    path("capa/<str:number>/close/", views.capa_close, name="capa-close"),
    path("capa/<str:number>/cancel/", views.capa_cancel, name="capa-cancel"),
    path("oos/", oos_views.oos_index, name="oos-index"),
    path("oos/open/<int:result_id>/", oos_views.oos_open, name="oos-open"),
    path("oos/<str:number>/", oos_views.oos_detail, name="oos-detail"),
    path("oos/<str:number>/findings/", oos_views.oos_findings, name="oos-findings"),
    path("oos/<str:number>/advance/", oos_views.oos_advance, name="oos-advance"),
    path("oos/<str:number>/conclude/", oos_views.oos_conclude, name="oos-conclude"),
    path("oos/<str:number>/capa/", oos_views.oos_capa_create, name="oos-capa-create"),
    path("complaints/", complaint_views.complaint_index, name="complaint-index"),
    path("complaints/record/", complaint_views.complaint_record, name="complaint-record"),
    path("complaints/<str:number>/", complaint_views.complaint_detail, name="complaint-detail"),
    path(
        "complaints/<str:number>/assess/",
        complaint_views.complaint_assess,
        name="complaint-assess",
    ),
    path(
        "complaints/<str:number>/reported/",
        complaint_views.complaint_reported,
        name="complaint-reported",
    ),
    path("complaints/<str:number>/close/", complaint_views.complaint_close, name="complaint-close"),
    path(
        "complaints/<str:number>/capa/",
        complaint_views.complaint_capa_create,
        name="complaint-capa-create",
    ),
    path("changes/", change_views.change_index, name="change-index"),
    path("changes/propose/", change_views.change_propose, name="change-propose"),
    path("changes/<str:number>/", change_views.change_detail, name="change-detail"),
    path("changes/<str:number>/edit/", change_views.change_edit, name="change-edit"),
    path("changes/<str:number>/approve/", change_views.change_approve, name="change-approve"),
    path("changes/<str:number>/close/", change_views.change_close, name="change-close"),
    path("changes/<str:number>/tasks/", change_views.change_task_add, name="change-task-add"),
    path(
        "changes/<str:number>/tasks/<int:pk>/done/",
        change_views.change_task_done,
        name="change-task-done",
    ),
    path(
        "changes/<str:number>/<str:action>/",
        change_views.change_transition,
        name="change-transition",
    ),
    path("<str:number>/", views.deviation_detail, name="detail"),
    path("<str:number>/class/", views.confirm_class, name="confirm-class"),
    path("<str:number>/investigation/", views.investigation, name="investigation"),
    path("<str:number>/extensions/", views.extension_request, name="extension-request"),
    path(
        "<str:number>/extensions/<int:pk>/<str:decision>/",
        views.extension_decide,
        name="extension-decide",
    ),
    path("<str:number>/capa/", views.capa_create, name="capa-create"),
    path("<str:number>/<str:action>/", views.transition, name="transition"),
]
