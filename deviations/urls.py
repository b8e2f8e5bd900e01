"""Deviation and CAPA pages. Fixed paths come before `<str:number>/`, which would otherwise take
them."""

from django.urls import path

from deviations import views

app_name = "deviations"

urlpatterns = [
    path("", views.index, name="index"),
    path("raise/", views.raise_deviation, name="raise"),
    path("trends/", views.trends, name="trends"),
    path("capa/<str:number>/", views.capa_detail, name="capa-detail"),
    path("capa/<str:number>/actions/", views.capa_action_add, name="capa-action-add"),
    path(
        "capa/<str:number>/actions/<int:pk>/done/", views.capa_action_done, name="capa-action-done"
    ),
    path("capa/<str:number>/effectiveness/", views.capa_effectiveness, name="capa-effectiveness"),
    path("capa/<str:number>/close/", views.capa_close, name="capa-close"),
    path("oos/<str:number>/", views.oos_detail, name="oos-detail"),
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
