"""The composition root's URLs: every app's pages and the one API."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from controlsite import views
from controlsite.api.errors import api_not_found

admin.site.site_header = "Control Site QMS administration"
admin.site.site_title = "Control Site QMS"

urlpatterns = [
    path("", views.home, name="home"),
    path("health/", views.health, name="health"),
    path("accounts/", include("controlsite.accounts.urls")),
    path("audit/", include("controlsite.audit.urls")),
    path("sites/", include("sites.urls")),
    path("training/", include("training.urls")),
    path("master-files/", include("masterfile.urls")),
    path("batches/", include("batches.urls")),
    path("deviations/", include("deviations.urls")),
    path("api/v1/", include("controlsite.api.urls")),
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
