"""Master files API resources, mounted under /api/v1/ by the composition root."""

from rest_framework.routers import SimpleRouter

router = SimpleRouter()
