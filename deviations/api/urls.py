"""Deviations API resources, mounted under /api/v1/ by the composition root."""

from rest_framework.routers import SimpleRouter

from deviations.api import views

router = SimpleRouter()
router.register("deviations", views.DeviationViewSet, basename="deviation")
router.register(
    "deviation-extensions", views.DeviationExtensionViewSet, basename="deviation-extension"
)
router.register("capas", views.CapaViewSet, basename="capa")
router.register("capa-actions", views.CapaActionViewSet, basename="capa-action")
