"""Comparability pages, included under /batches/comparability/ in the `batches` namespace.
Fixed paths (`checks/…`) come before `<code>/`, which would otherwise take them; product codes
are upper case, so they never meet a fixed lower-case path."""

from django.urls import path

from batches.comparability import views

urlpatterns = [
    path("", views.overview, name="comparability"),
    path("checks/", views.checks, name="comparability-checks"),
    path("checks/schedule/", views.check_schedule, name="comparability-check-schedule"),
    path("checks/<int:pk>/", views.check_detail, name="comparability-check"),
    path("checks/<int:pk>/record/", views.check_record, name="comparability-check-record"),
    path("checks/<int:pk>/review/", views.check_review, name="comparability-check-review"),
    path("checks/<int:pk>/cancel/", views.check_cancel, name="comparability-check-cancel"),
    path("<str:code>/", views.product_detail, name="comparability-product"),
    path("<str:code>/limits/", views.limits, name="comparability-limits"),
    path("<str:code>/limits/approve/", views.limit_approve, name="comparability-limit-approve"),
    path("<str:code>/<str:key>/<str:site_code>/", views.site_chart, name="comparability-site"),
    path(
        "<str:code>/<str:key>/<str:site_code>/chart.svg",
        views.site_chart_svg,
        name="comparability-chart-svg",
    ),
]
