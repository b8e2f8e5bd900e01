"""The kernel's API resources. The composition root (controlsite/urls.py) adds every app's."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from controlsite.api import views
from controlsite.webhooks.api import views as webhook_views

router = DefaultRouter(trailing_slash=True)
router.include_format_suffixes = False
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("audit-reviews", views.AuditReviewViewSet, basename="audit-review")
router.register("me", views.MeViewSet, basename="me")
router.register(
    "webhook-subscriptions",
    webhook_views.WebhookSubscriptionViewSet,
    basename="webhook-subscription",
)
router.register(
    "webhook-deliveries", webhook_views.WebhookDeliveryViewSet, basename="webhook-delivery"
)
