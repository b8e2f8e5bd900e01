"""Training pages. Fixed paths come before `<str:…>/`, which would otherwise take them."""

from django.urls import path

from training.views import assignments, curricula, items, matrix, mine, procedures, records

app_name = "training"

urlpatterns = [
    path("", mine.index, name="index"),
    path("my/", mine.my_training, name="my"),
    path("my/<str:code>/", mine.read, name="read"),
    path("my/<str:code>/sign/", mine.acknowledge, name="acknowledge"),
    path("procedures/", procedures.procedure_index, name="procedures"),
    path("procedures/register/", procedures.procedure_create, name="procedure-create"),
    path("procedures/<str:number>/", procedures.procedure_detail, name="procedure-detail"),
    path("procedures/<str:number>/issue/", procedures.version_issue, name="version-issue"),
    path(
        "procedures/<str:number>/v<int:version>/file/",
        procedures.version_file,
        name="version-file",
    ),
    path("items/", items.item_index, name="items"),
    path("items/create/", items.item_create, name="item-create"),
    path("items/<str:code>/", items.item_detail, name="item-detail"),
    path("items/<str:code>/edit/", items.item_edit, name="item-edit"),
    path("curricula/", curricula.curriculum_index, name="curricula"),
    path("curricula/create/", curricula.curriculum_create, name="curriculum-create"),
    path("curricula/<int:pk>/", curricula.curriculum_detail, name="curriculum-detail"),
    path("curricula/<int:pk>/items/", curricula.requirement_add, name="requirement-add"),
    path(
        "curricula/<int:pk>/items/<int:requirement>/remove/",
        curricula.requirement_remove,
        name="requirement-remove",
    ),
    path("assignments/", assignments.assignment_index, name="assignments"),
    path("assignments/create/", assignments.assignment_create, name="assignment-create"),
    path("records/", records.record_index, name="records"),
    path("records/assess/", records.record_assess, name="record-assess"),
    path("records/enter/", records.record_enter, name="record-enter"),
    path("records/<int:pk>/", records.record_detail, name="record-detail"),
    path("matrix/", matrix.matrix_index, name="matrix-index"),
    path("matrix/<str:code>/", matrix.site_matrix, name="matrix"),
    path("sites/<str:code>/compliance/", matrix.site_compliance, name="site-compliance"),
]
