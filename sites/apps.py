from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SitesConfig(AppConfig):
    name = "sites"
    verbose_name = _("Spoke sites")
    default_auto_field = "django.db.models.BigAutoField"
