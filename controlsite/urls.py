"""The composition root's URLs: every app's pages and the one API."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import batches.api.urls
import deviations.api.urls
import masterfile.api.urls
import sites.api.urls
import training.api.urls
from controlsite import views
from controlsite.api.errors import api_not_found
from controlsite.api.urls import router as api_router

# One API, one root (design §6): every app's router is served under /api/v1/.
for app_urls in (
    sites.api.urls,
    training.api.urls,
    masterfile.api.urls,
    batches.api.urls,
    deviations.api.urls,
):
    api_router.registry.extend(app_urls.router.registry)

admin.site.site_header = "Control Site QMS administration"
admin.site.site_title = "Control Site QMS"

urlpatterns = [
    path("", views.home, name="home"),
    path("health/", views.health, name="health"),
    path("accounts/", include("controlsite.accounts.urls")),
    path("audit/", include("controlsite.audit.urls")),
    path("notifications/", include("controlsite.notifications.urls")),
    path("sites/", include("sites.urls")),
    path("training/", include("training.urls")),
    path("master-files/", include("masterfile.urls")),
    path("batches/", include("batches.urls")),
    path("deviations/", include("deviations.urls")),
    path("api/v1/", include((api_router.urls, "api"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", api_not_found),
    path("admin/", admin.site.urls),
]

handler404 = "controlsite.views.not_found"
handler500 = "controlsite.views.server_error"

if settings.DEBUG:  # pragma: no cover
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

__all__ = ["api_router", "handler404", "handler500", "urlpatterns"]
