"""Batches API resources, mounted under /api/v1/ by the composition root."""

from rest_framework.routers import SimpleRouter

from batches.api import views

router = SimpleRouter()
router.register("batch-templates", views.BatchTemplateViewSet, basename="batch-template")
router.register("batches", views.BatchViewSet, basename="batch")
router.register("supplies", views.SupplyViewSet, basename="supply")
