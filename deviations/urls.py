from django.urls import path

from deviations import views

app_name = "deviations"

urlpatterns = [
    path("", views.index, name="index"),
    path("capa/<str:number>/", views.capa_detail, name="capa-detail"),
    path("oos/<str:number>/", views.oos_detail, name="oos-detail"),
    path("<str:number>/", views.deviation_detail, name="detail"),
]
