from django.urls import path

from masterfile import views

app_name = "masterfile"

urlpatterns = [
    path("", views.index, name="index"),
]
