"""The kernel's API resources. The composition root (controlsite/urls.py) adds every app's."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from controlsite.api import views

router = DefaultRouter(trailing_slash=True)
router.include_format_suffixes = False
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("audit-reviews", views.AuditReviewViewSet, basename="audit-review")
router.register("me", views.MeViewSet, basename="me")
