"""Reads for complaints and suspected adverse reactions: who sees what, the list and its
counts, and the 15-day reporting clock of a serious suspected adverse reaction (DV-11, RP-05,
RP-06)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.db.models import Count, Q, QuerySet

from deviations.choices import (
    ADR_CLOCK_WARN_DAYS,
    SERIOUS_ADR_REPORT_DAYS,
    ComplaintKind,
    ComplaintStatus,
)
from deviations.models import Complaint
from deviations.selectors import _sees_every_site, _signed_in
from sites.selectors import sites_visible_to


def complaints_visible_to(user: Any) -> QuerySet[Complaint]:
    """Every complaint for Control Site QA, QPs and inspectors; those of their sites for site
    staff and integrators (a site-limited token narrows either)."""
    if not _signed_in(user):
        return Complaint.objects.none()
    if _sees_every_site(user):
        return Complaint.objects.all()
    return Complaint.objects.filter(site__in=sites_visible_to(user))


def complaint_get_for_user(*, user: Any, number: str) -> Complaint:
    """The complaint, if the user may see it; `Complaint.DoesNotExist` otherwise (→ 404)."""
    return (
        complaints_visible_to(user)
        .select_related("site", "batch", "product", "reported_by", "created_by")
        .get(number=number)
    )


#
# The reporting clock (RP-05)
#


def serious_adr_q() -> Q:
    return Q(kind=ComplaintKind.ADVERSE_REACTION, serious=True)


def report_pending_q() -> Q:
    """Serious suspected adverse reactions not yet reported to the MHRA."""
    return serious_adr_q() & Q(reported_on__isnull=True, report_due_on__isnull=False)


def overdue_q(today: dt.date) -> Q:
    """Serious suspected adverse reactions past their report date and still not reported."""
    return report_pending_q() & Q(report_due_on__lt=today)


@dataclasses.dataclass(frozen=True)
class ReportClock:
    """Where a serious suspected adverse reaction stands against its 15-day clock."""

    aware_on: dt.date
    due_on: dt.date
    today: dt.date
    reported_on: dt.date | None

    @property
    def reported(self) -> bool:
        return self.reported_on is not None

    @property
    def days_left(self) -> int | None:
        """Days until the last day to report (0 on the day itself, negative once past); None
        once reported."""
        return None if self.reported else (self.due_on - self.today).days

    @property
    def overdue(self) -> bool:
        return not self.reported and self.today > self.due_on

    @property
    def on_time(self) -> bool | None:
        """Whether the report was made by the due day; None until reported."""
        return None if self.reported_on is None else self.reported_on <= self.due_on

    @property
    def fraction_used(self) -> float:
        """How much of the 15 days had passed — by today, or by the day it was reported — from
        0.0 to 1.0."""
        end = self.reported_on or self.today
        used = (end - self.aware_on).days / SERIOUS_ADR_REPORT_DAYS
        return min(max(used, 0.0), 1.0)

    @property
    def percent(self) -> int:
        return round(100 * self.fraction_used)

    @property
    def state(self) -> str:
        """A badge colour: `ok` with time in hand or reported on time, `warn` in the last
        days, `block` when overdue or reported late."""
        if self.reported:
            return "ok" if self.on_time else "block"
        days_left = self.due_on - self.today
        if days_left.days < 0:
            return "block"
        return "warn" if days_left.days <= ADR_CLOCK_WARN_DAYS else "ok"

    @property
    def label(self) -> str:
        if self.reported_on is not None:
            late = (self.reported_on - self.due_on).days
            return "Reported on time" if late <= 0 else f"Reported {late} day{_s(late)} late"
        left = (self.due_on - self.today).days
        if left < 0:
            return f"Overdue by {-left} day{_s(-left)}"
        if left == 0:
            return "Due today"
        return f"{left} day{_s(left)} left"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def report_clock(complaint: Complaint, today: dt.date) -> ReportClock | None:
    """The clock of a serious suspected adverse reaction, or None for any other complaint.
    Reads the complaint's own fields only: no query."""
    if complaint.report_due_on is None:
        return None
    return ReportClock(
        aware_on=complaint.aware_on,
        due_on=complaint.report_due_on,
        today=today,
        reported_on=complaint.reported_on,
    )


#
# The list
#


@dataclasses.dataclass(frozen=True)
class ComplaintCounts:
    open: int
    reports_due: int
    overdue: int


def complaint_counts(queryset: QuerySet[Complaint], today: dt.date) -> ComplaintCounts:
    """Open complaints, serious suspected adverse reactions awaiting their report, and those
    past their report date — in one query."""
    row = queryset.aggregate(
        open=Count("pk", filter=Q(status=ComplaintStatus.OPEN)),
        reports_due=Count("pk", filter=report_pending_q()),
        overdue=Count("pk", filter=overdue_q(today)),
    )
    return ComplaintCounts(open=row["open"], reports_due=row["reports_due"], overdue=row["overdue"])


def complaint_list(
    *,
    user: Any,
    today: dt.date,
    kind: str = "",
    serious: bool | None = None,
    overdue: bool | None = None,
    status: str = "",
    site_code: str = "",
    batch_number: str = "",
) -> QuerySet[Complaint]:
    """The complaints the user may see, narrowed by the list's filters, newest first."""
    queryset = complaints_visible_to(user)
    if kind:
        queryset = queryset.filter(kind=kind)
    if serious is not None:
        queryset = queryset.filter(serious=serious)
    if overdue is not None:
        queryset = (
            queryset.filter(overdue_q(today)) if overdue else queryset.exclude(overdue_q(today))
        )
    if status:
        queryset = queryset.filter(status=status)
    if site_code:
        queryset = queryset.filter(site__code=site_code)
    if batch_number:
        queryset = queryset.filter(batch__number=batch_number)
    return queryset.select_related("site", "batch", "product").order_by("-created_at", "-id")
