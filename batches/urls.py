"""Batch pages. `detail` is linked to by the gates, services and notifications; keep the name.
Fixed paths come before `<str:number>/`, which would otherwise take them."""

from django.urls import include, path

from batches import views

app_name = "batches"

urlpatterns = [
    path("", views.index, name="index"),
    path("start/", views.batch_start, name="start"),
    path("queue/", views.queue, name="queue"),
    path("queue/rows/", views.queue_rows, name="queue-rows"),
    path("templates/", views.template_list, name="templates"),
    path("templates/new/", views.template_create, name="template-create"),
    path("templates/<int:pk>/", views.template_detail, name="template-detail"),
    path("templates/<int:pk>/steps/", views.template_step_add, name="template-step-add"),
    path(
        "templates/<int:pk>/specifications/",
        views.template_specification_add,
        name="template-specification-add",
    ),
    path("templates/<int:pk>/approve/", views.template_approve, name="template-approve"),
    path("comparability/", include("batches.comparability.urls")),
    path("<str:number>/", views.batch_detail, name="detail"),
    path("<str:number>/steps/<int:position>/", views.step_record, name="step-record"),
    path("<str:number>/steps/<int:position>/verify/", views.step_verify, name="step-verify"),
    path("<str:number>/results/", views.result_record, name="result-record"),
    path("<str:number>/supply/", views.supply_record, name="supply-record"),
    path(
        "<str:number>/supply/<int:pk>/administered/",
        views.administration_confirm,
        name="administration-confirm",
    ),
    path("<str:number>/certify/", views.certify, name="certify"),
    path("<str:number>/certify/sign/", views.certify_sign, name="certify-sign"),
    path("<str:number>/certify/concession/", views.concession_sign, name="concession-sign"),
    path("<str:number>/certify/reject/", views.reject, name="reject"),
]
