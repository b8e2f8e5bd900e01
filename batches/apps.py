from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = _("Batches")
    default_auto_field = "django.db.models.BigAutoField"
