"""Reads for OOS investigations: who sees which, the list with its filters, and the failed
results still waiting for an investigation (DV-10). Visibility is `oos_visible_to`: every site
for the Control Site's people, their own sites for site staff — an investigation someone may not
see does not exist for them (404)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from batches.models import TestResult
from batches.selectors import batches_visible_to
from deviations.models import OosInvestigation
from deviations.selectors import oos_visible_to

# Everything a page or an answer shows of an investigation, in one query.
OOS_RELATED = (
    "result__batch__site",
    "result__specification",
    "result__created_by",
    "deviation",
    "closure_signature",
    "created_by",
)


def oos_get_for_user(*, user: Any, number: str) -> OosInvestigation:
    """The investigation, if the user may see it; `OosInvestigation.DoesNotExist` otherwise
    (→ 404)."""
    return oos_visible_to(user).select_related(*OOS_RELATED).get(number=number)


def oos_list_for_user(
    *,
    user: Any,
    outcome: str = "",
    phase: str = "",
    site: str = "",
    batch: str = "",
) -> QuerySet[OosInvestigation]:
    """The investigations the user may see, newest first, narrowed by outcome, phase, site
    code and batch number when given (never widened)."""
    rows = oos_visible_to(user).select_related(*OOS_RELATED)
    if outcome:
        rows = rows.filter(outcome=outcome)
    if phase:
        rows = rows.filter(phase=phase)
    if site:
        rows = rows.filter(result__batch__site__code=site)
    if batch:
        rows = rows.filter(result__batch__number=batch)
    return rows.order_by("-created_at", "-id")


def failed_results_without_oos(*, user: Any) -> QuerySet[TestResult]:
    """Failed results of the batches the user may see that no investigation covers yet, newest
    first: QA's queue of investigations to open."""
    return (
        TestResult.objects.filter(
            batch__in=batches_visible_to(user), passed=False, oos__isnull=True
        )
        .select_related("batch__site", "specification")
        .order_by("-created_at", "-id")
    )


def result_get_for_user(*, user: Any, pk: int) -> TestResult:
    """A result (failed or passed) of a batch the user may see, by id;
    `TestResult.DoesNotExist` otherwise (→ 404 on a page, 400 in a request body)."""
    return (
        TestResult.objects.filter(batch__in=batches_visible_to(user))
        .select_related("batch__site", "specification")
        .get(pk=pk)
    )
