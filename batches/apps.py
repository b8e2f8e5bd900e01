"""Batch records and QP certification: templates, batches, steps, results, the QP's decision
and supply records (design §3 and §5)."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = _("Batches")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from batches import gates as batch_gates
        from batches.comparability.demo import load_demo_comparability
        from batches.demo import load_demo_batches
        from batches.events import LABELS, WEBHOOK_DESCRIPTIONS
        from batches.oversight import register_oversight
        from batches.panels import batches_panel
        from batches.report import register_report_sections
        from controlsite import dashboard, demo, gates
        from controlsite.audit.events import register_event_labels
        from controlsite.webhooks.registry import register_event_type

        register_event_labels(LABELS)
        for event_type, description in WEBHOOK_DESCRIPTIONS.items():
            register_event_type(event_type, description)
        gates.register("batches.template_approved", batch_gates.template_approved)
        gates.register("batches.record_complete", batch_gates.record_complete)
        gates.register("batches.specifications_met", batch_gates.specifications_met)
        gates.register("batches.not_expired", batch_gates.not_expired)
        gates.register("batches.signers_qualified", batch_gates.signers_qualified)
        dashboard.register(
            dashboard.Panel(
                "batches", "Batches", "batches/panels/_overview.html", batches_panel, 20
            )
        )
        demo.register(demo.DemoLoader("batches", load_demo_batches, order=30))
        register_report_sections()
        # After the batches (templates, staffing), before deviations (which opens the
        # deviations the comparability signals ask for).
        demo.register(demo.DemoLoader("comparability", load_demo_comparability, order=35))
        register_oversight()
