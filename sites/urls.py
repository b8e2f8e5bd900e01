from django.urls import path

from sites import views

app_name = "sites"

urlpatterns = [
    path("", views.index, name="index"),
    path("<str:code>/", views.detail, name="detail"),
]
