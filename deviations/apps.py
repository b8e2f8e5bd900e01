"""Deviations, OOS investigations, CAPA, change control and complaints (design §3)."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DeviationsConfig(AppConfig):
    name = "deviations"
    verbose_name = _("Deviations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from controlsite import demo, gates, record_actions
        from controlsite.audit.events import register_event_labels
        from controlsite.webhooks.registry import register_event_type
        from deviations import gates as deviation_gates
        from deviations.demo import load_demo_deviations
        from deviations.events import LABELS, WEBHOOK_DESCRIPTIONS
        from deviations.oversight import register_oversight
        from deviations.report import register_report_sections
        from deviations.views import raise_on_batch_url

        register_event_labels(LABELS)
        for event_type, description in WEBHOOK_DESCRIPTIONS.items():
            register_event_type(event_type, description)
        gates.register("deviations.no_open_deviation", deviation_gates.no_open_deviation)
        record_actions.register(
            record_actions.RecordAction(
                "deviations.raise_on_batch",
                "batches.batch",
                "Raise a deviation",
                raise_on_batch_url,
            )
        )
        demo.register(demo.DemoLoader("deviations", load_demo_deviations, order=40))
        register_report_sections()
        register_oversight()
