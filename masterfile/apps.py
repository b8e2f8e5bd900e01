"""Products and their POC/MM master files: versions, review and approval, the site annex, PDF
export for the MHRA.
"""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MasterfileConfig(AppConfig):
    name = "masterfile"
    verbose_name = _("Master files")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from controlsite import dashboard, demo, gates
        from controlsite.audit.events import register_event_labels
        from masterfile.demo import load_demo_master_files
        from masterfile.events import LABELS
        from masterfile.gates import master_file_in_force
        from masterfile.panels import master_files_panel
        from masterfile.report import register_report_sections

        register_event_labels(LABELS)
        gates.register("masterfile.master_file_in_force", master_file_in_force)
        dashboard.register(
            dashboard.Panel(
                "masterfile",
                "Master files",
                "masterfile/panels/_overview.html",
                master_files_panel,
                10,
            )
        )
        demo.register(demo.DemoLoader("masterfile", load_demo_master_files, order=20))
        register_report_sections()
