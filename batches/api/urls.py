"""Batches API resources, mounted under /api/v1/ by the composition root."""

from rest_framework.routers import SimpleRouter

from batches.api import comparability, views

router = SimpleRouter()
router.register("batch-templates", views.BatchTemplateViewSet, basename="batch-template")
router.register("batches", views.BatchViewSet, basename="batch")
router.register("supplies", views.SupplyViewSet, basename="supply")
router.register("reference-limits", comparability.ReferenceLimitViewSet, basename="reference-limit")
router.register("comparability", comparability.ComparabilityViewSet, basename="comparability")
router.register(
    "comparability-checks", comparability.ComparabilityCheckViewSet, basename="comparability-check"
)
router.register(
    "comparability-signals",
    comparability.ComparabilitySignalViewSet,
    basename="comparability-signal",
)
