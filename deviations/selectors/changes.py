"""Reads for change control: who sees which change, where one may be proposed, the signature of
its post-implementation review (issue 6 §4; DV-07…DV-09).

Control Site QA, QPs and inspectors see every change; site staff see the changes of the sites
they work at (a change tied to no site — a network-wide one — only the Control Site's people);
a token limited to some sites narrows it to theirs. A change you may not see does not exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from controlsite.audit.services import record_label
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from deviations.models import ChangeControl, ChangeTask
from deviations.selectors import _sees_every_site, _signed_in
from sites.choices import SiteRole
from sites.models import Site
from sites.selectors import live_memberships, sites_visible_to


def changes_visible_to(user: Any) -> QuerySet[ChangeControl]:
    """Every change for the Control Site's people; those of their sites for site staff."""
    if not _signed_in(user):
        return ChangeControl.objects.none()
    if _sees_every_site(user):
        return ChangeControl.objects.all()
    return ChangeControl.objects.filter(site__in=sites_visible_to(user))


def change_get_for_user(*, user: Any, number: str) -> ChangeControl:
    """The change, if the user may see it; `ChangeControl.DoesNotExist` otherwise (→ 404)."""
    return (
        changes_visible_to(user)
        .select_related(
            "site",
            "product",
            "created_by",
            "qa_signature",
            "qp_signature",
            "master_file_draft",
            "regulatory_notification",
        )
        .get(number=number)
    )


def change_tasks_visible_to(user: Any) -> QuerySet[ChangeTask]:
    """The implementation tasks of the changes the user may see."""
    return ChangeTask.objects.filter(change__in=changes_visible_to(user))


def change_proposal_sites(user: Any) -> QuerySet[Site]:
    """The sites `user` may propose a change at: every site they see for Control Site QA; the
    sites they lead for a site lead; none for anyone else."""
    visible = sites_visible_to(user)
    if permissions.user_can(user, Capability.MANAGE_QUALITY_RECORDS):
        return visible
    led = live_memberships().filter(user=user, role=SiteRole.SITE_LEAD).values("site_id")
    return visible.filter(pk__in=led)


def change_review_signature(change: ChangeControl) -> ElectronicSignature | None:
    """QA's signature on the post-implementation review (meaning "reviewed"), given at
    closure, or None."""
    return (
        ElectronicSignature.objects.filter(
            target_type=record_label(change),
            target_id=str(change.pk),
            meaning=SignatureMeaning.REVIEWED,
        )
        .order_by("-signed_at", "-id")
        .first()
    )
