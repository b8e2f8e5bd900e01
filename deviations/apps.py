"""Deviations, OOS investigations, CAPA, change control and complaints (design §3)."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DeviationsConfig(AppConfig):
    name = "deviations"
    verbose_name = _("Deviations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from controlsite import gates
        from controlsite.audit.events import register_event_labels
        from controlsite.webhooks.registry import register_event_type
        from deviations import gates as deviation_gates
        from deviations.events import LABELS, WEBHOOK_DESCRIPTIONS

        register_event_labels(LABELS)
        for event_type, description in WEBHOOK_DESCRIPTIONS.items():
            register_event_type(event_type, description)
        gates.register("deviations.no_open_deviation", deviation_gates.no_open_deviation)
