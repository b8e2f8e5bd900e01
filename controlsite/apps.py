from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ControlSiteConfig(AppConfig):
    name = "controlsite"
    verbose_name = _("Control Site kernel")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.models import update_last_login
        from django.contrib.auth.signals import user_logged_in
        from django.db.models.signals import post_migrate, pre_save
        from simple_history.signals import pre_create_historical_record

        from controlsite import panels
        from controlsite.audit.history import fill_history_row, require_reason_before_save
        from controlsite.audit.immutability import install_after_migrate

        pre_create_historical_record.connect(fill_history_row, dispatch_uid="controlsite_history")
        pre_save.connect(require_reason_before_save, dispatch_uid="controlsite_reason_required")
        # Logins are audit events; last_login is set by the login service without history.
        user_logged_in.disconnect(update_last_login, dispatch_uid="update_last_login")
        post_migrate.connect(install_after_migrate, dispatch_uid="controlsite_append_only")
        panels.register_kernel_panels()
