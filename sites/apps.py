from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SitesConfig(AppConfig):
    name = "sites"
    verbose_name = _("Sites")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from controlsite import dashboard, demo, gates
        from controlsite.accounts.scope import register_site_provider
        from controlsite.audit.events import register_event_labels
        from sites.demo import load_demo_sites
        from sites.events import LABELS
        from sites.gates import site_is_active
        from sites.oversight import register_oversight, register_panel
        from sites.panels import sites_panel
        from sites.report import register_report_sections
        from sites.selectors import user_site_codes

        register_site_provider(user_site_codes)
        register_event_labels(LABELS)
        gates.register("sites.site_is_active", site_is_active)
        dashboard.register(
            dashboard.Panel("sites", "Sites", "sites/panels/_overview.html", sites_panel, 5)
        )
        demo.register(demo.DemoLoader("sites", load_demo_sites, order=10))
        register_report_sections()
        register_oversight()
        register_panel()
