from django.urls import path

from controlsite.audit import views

app_name = "audit"

urlpatterns = [
    path("", views.event_list, name="events"),
    path("review/", views.review_sign, name="review"),
    path("export.csv", views.event_export, name="export"),
    path("record/<str:record_type>/<str:record_id>/", views.record_trail_view, name="record"),
]
