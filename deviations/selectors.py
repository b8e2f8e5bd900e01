"""Reads for deviations and CAPA: who sees what, lists, overdue (design §3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from controlsite.accounts.scope import token_site_limit
from deviations.choices import DEVIATION_OPEN, DeviationStatus
from deviations.models import Capa, Deviation, OosInvestigation
from sites.selectors import sites_visible_to


def _sees_every_site(user: Any) -> bool:
    return permissions.user_can(user, Capability.VIEW_ALL_SITES) and token_site_limit(user) is None


def _signed_in(user: Any) -> bool:
    return user is not None and getattr(user, "is_authenticated", False) and user.is_active


def deviations_visible_to(user: Any) -> QuerySet[Deviation]:
    """Every deviation for the Control Site's people; those of their sites for site staff."""
    if not _signed_in(user):
        return Deviation.objects.none()
    if _sees_every_site(user):
        return Deviation.objects.all()
    return Deviation.objects.filter(site__in=sites_visible_to(user))


def deviation_get_for_user(*, user: Any, number: str) -> Deviation:
    """The deviation, if the user may see it; `Deviation.DoesNotExist` otherwise (→ 404)."""
    return deviations_visible_to(user).select_related("site", "batch").get(number=number)


def capas_visible_to(user: Any) -> QuerySet[Capa]:
    """CAPAs of the sites the user may see; one tied to no site (an audit finding of the
    Control Site) only for those who see every site."""
    if not _signed_in(user):
        return Capa.objects.none()
    if _sees_every_site(user):
        return Capa.objects.all()
    return Capa.objects.filter(site__in=sites_visible_to(user))


def oos_visible_to(user: Any) -> QuerySet[OosInvestigation]:
    if not _signed_in(user):
        return OosInvestigation.objects.none()
    if _sees_every_site(user):
        return OosInvestigation.objects.all()
    return OosInvestigation.objects.filter(result__batch__site__in=sites_visible_to(user))


def overdue_q(today: dt.date | None = None) -> Q:
    """Deviations past their triage date (still open) or their closure date (not closed)."""
    today = today or timezone.localdate()
    return Q(status__in=DEVIATION_OPEN) & (
        Q(status=DeviationStatus.OPEN, triage_due_on__lt=today) | Q(due_on__lt=today)
    )
