from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MasterfileConfig(AppConfig):
    name = "masterfile"
    verbose_name = _("Master files")
    default_auto_field = "django.db.models.BigAutoField"
