"""Spoke sites API resources, mounted under /api/v1/ by the composition root."""

from rest_framework.routers import SimpleRouter

from sites.api import views

router = SimpleRouter()
router.register("sites", views.SiteViewSet, basename="site")
router.register("site-memberships", views.SiteMembershipViewSet, basename="site-membership")
router.register("equipment", views.EquipmentViewSet, basename="equipment")
router.register("site-audits", views.SiteAuditViewSet, basename="site-audit")
router.register(
    "regulatory-notifications",
    views.RegulatoryNotificationViewSet,
    basename="regulatory-notification",
)
router.register("control-site", views.ControlSiteViewSet, basename="control-site")
