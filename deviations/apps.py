from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DeviationsConfig(AppConfig):
    name = "deviations"
    verbose_name = _("Deviations")
    default_auto_field = "django.db.models.BigAutoField"
