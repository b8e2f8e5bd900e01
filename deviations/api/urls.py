"""Deviations API resources, mounted under /api/v1/ by the composition root."""

from rest_framework.routers import SimpleRouter

from deviations.api import views
from deviations.api.views import changes as change_views
from deviations.api.views import complaints as complaint_views
from deviations.api.views import oos as oos_views

router = SimpleRouter()
router.register("deviations", views.DeviationViewSet, basename="deviation")
router.register(
    "deviation-extensions", views.DeviationExtensionViewSet, basename="deviation-extension"
)
router.register("capas", views.CapaViewSet, basename="capa")
router.register("capa-actions", views.CapaActionViewSet, basename="capa-action")
router.register("change-controls", change_views.ChangeControlViewSet, basename="change-control")
router.register("change-tasks", change_views.ChangeTaskViewSet, basename="change-task")
router.register("complaints", complaint_views.ComplaintViewSet, basename="complaint")
router.register(
    "oos-investigations", oos_views.OosInvestigationViewSet, basename="oos-investigation"
)
