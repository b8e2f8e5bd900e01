"""The one versioned API root: the kernel's resources plus every app's router (design §6)."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from rest_framework.routers import DefaultRouter

from controlsite.api import views

DOMAIN_APPS = ("sites", "training", "masterfile", "batches", "deviations")

router = DefaultRouter(trailing_slash=True)
router.include_format_suffixes = False
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("audit-reviews", views.AuditReviewViewSet, basename="audit-review")

# This module is part of the composition root, so it may name the apps; each app exposes a
# `router` in `<app>/api/urls.py` and all of them are served under one root.
for app in DOMAIN_APPS:
    if app in settings.INSTALLED_APPS:
        app_router = import_module(f"{app}.api.urls").router
        router.registry.extend(app_router.registry)

app_name = "api"
urlpatterns = router.urls
