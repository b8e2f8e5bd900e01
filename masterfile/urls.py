"""Master-file pages. `index`, `product-detail` and `version-detail` are linked to by the
services, notifications and gates; keep those names."""

from django.urls import path

from masterfile import views

app_name = "masterfile"

urlpatterns = [
    path("", views.index, name="index"),
    # Products
    path("products/new/", views.product_create, name="product-create"),
    path("products/<int:pk>/", views.product_detail, name="product-detail"),
    path("products/<int:pk>/edit/", views.product_edit, name="product-edit"),
    path("products/<int:pk>/sites/add/", views.product_site_add, name="product-site-add"),
    path(
        "products/<int:pk>/sites/<int:link_pk>/end/",
        views.product_site_end,
        name="product-site-end",
    ),
    path("products/<int:pk>/master-file/", views.master_file_edit, name="master-file-edit"),
    path("products/<int:pk>/drafts/", views.draft_start, name="draft-start"),
    # Versions
    path("versions/<int:pk>/", views.version_detail, name="version-detail"),
    path("versions/<int:pk>/diff/", views.version_diff_page, name="version-diff"),
    path("versions/<int:pk>/approve/", views.version_approve, name="version-approve"),
    path("versions/<int:pk>/summary/", views.change_summary, name="change-summary"),
    path("versions/<int:pk>/sections/add/", views.section_add, name="section-add"),
    path("versions/<int:pk>/sections/reorder/", views.sections_reorder, name="sections-reorder"),
    path("versions/<int:pk>/sections/preview/", views.section_preview, name="section-preview"),
    path(
        "versions/<int:pk>/sections/<int:section_pk>/edit/",
        views.section_edit,
        name="section-edit",
    ),
    path("versions/<int:pk>/comments/", views.comment_add, name="comment-add"),
    path("versions/<int:pk>/exports/", views.export_create, name="export-create"),
    path("versions/<int:pk>/lifecycle/<str:action>/", views.version_action, name="version-action"),
    path("comments/<int:pk>/resolve/", views.comment_resolve, name="comment-resolve"),
    # Exports
    path("exports/<int:pk>/", views.export_status, name="export-status"),
    path("exports/<int:pk>/retry/", views.export_retry, name="export-retry"),
    path("exports/<int:pk>/download/", views.export_download, name="export-download"),
    # Annual reports
    path(
        "products/<int:pk>/annual-reports/",
        views.annual_report_create,
        name="annual-report-create",
    ),
    path("annual-reports/<int:pk>/", views.annual_report_status, name="annual-report-status"),
    path("annual-reports/<int:pk>/retry/", views.annual_report_retry, name="annual-report-retry"),
    path(
        "annual-reports/<int:pk>/download/",
        views.annual_report_download,
        name="annual-report-download",
    ),
    path(
        "annual-reports/<int:pk>/submission/",
        views.annual_report_submission,
        name="annual-report-submission",
    ),
]
