"""Training and qualification: procedures, items, curricula, assignments, records and the
checks that nobody untrained signs (design §3; TR-01…TR-07)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_save
from django.utils.translation import gettext_lazy as _


def _membership_saved(
    sender: Any, instance: Any, created: bool, raw: bool = False, **_: Any
) -> None:
    """Someone joined or left a site: their assignments follow (TR-03)."""
    if raw:
        return
    from training.choices import AssignmentCause
    from training.services import assignments_reconcile

    assignments_reconcile(instance.user, cause=AssignmentCause.JOINED_SITE)


def _grant_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **_: Any) -> None:
    """Someone was given or lost a role: their assignments follow (TR-03)."""
    if raw:
        return
    from training.choices import AssignmentCause
    from training.services import assignments_reconcile

    assignments_reconcile(instance.user, cause=AssignmentCause.ROLE_GRANTED)


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = _("Training")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from controlsite import qualification
        from controlsite.accounts.models import RoleGrant
        from controlsite.audit.events import register_event_labels
        from sites.models import SiteMembership
        from training.checks import may_sign
        from training.demo import register_demo
        from training.events import LABELS
        from training.oversight import register_oversight
        from training.panels import register_panels

        register_event_labels(LABELS)
        qualification.register("training.accountability", may_sign)
        post_save.connect(_membership_saved, sender=SiteMembership, dispatch_uid="training.member")
        post_save.connect(_grant_saved, sender=RoleGrant, dispatch_uid="training.grant")
        register_panels()
        register_demo()
        register_oversight()
