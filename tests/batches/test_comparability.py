"""Comparability services (issue 8; SO-08, SO-09): reference limits approved with a QA
signature, evaluation against them, signals raised once per episode and turned into exactly one
deviation each, and the annual check with paired results."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence

import pytest
from django.urls import reverse
from django.utils import timezone

from batches import services as batch_services
from batches.choices import CheckStatus, ComparabilitySignalKind, LimitBasis, LimitStatus
from batches.comparability import selectors, services
from batches.comparability.services import PairEntry
from batches.events import ComparabilityEvent
from batches.models import (
    Batch,
    CheckPair,
    ComparabilityCheck,
    ComparabilitySignal,
    ComparabilitySnapshot,
    ReferenceLimit,
)
from batches.stats import Verdict
from controlsite.audit.models import AuditEvent
from controlsite.errors import ApplicationError, ConflictError
from controlsite.notifications.models import Notification
from controlsite.signatures.services import signature_is_valid
from deviations import services as deviation_services
from deviations.models import Deviation
from sites.models import Site
from tests.batches.helpers import COI, Plant, make_plant
from tests.masterfile.helpers import signing

pytestmark = pytest.mark.django_db

CLEAN = [91.0, 93.0, 92.0, 94.0, 91.5, 92.5, 93.5, 92.0, 91.0, 93.0]


@pytest.fixture
def plant() -> Plant:
    return make_plant()


def made(plant: Plant, site: Site, values: Sequence[float]) -> list[Batch]:
    """One batch per value at `site`, each with its viability result, in this order."""
    batches = []
    for value in values:
        batch = batch_services.batch_start(
            actor=plant.operator, site=site, product=plant.product, coi_reference=COI
        )
        batch_services.result_record(
            actor=plant.operator, batch=batch, specification_key="viability", value=value
        )
        batches.append(batch)
    return batches


def approve(plant: Plant, **kwargs: object) -> ReferenceLimit:
    options: dict[str, object] = {"key": "viability", "basis": LimitBasis.SPECIFICATION}
    options.update(kwargs)
    options.setdefault("margin", "3")
    if options["basis"] == LimitBasis.SPECIFICATION:
        options.setdefault("lower", "80")
        options.setdefault("upper", "100")
    return services.reference_limit_approve(
        actor=plant.qa,
        product=plant.product,
        credentials=signing(plant.qa),
        reason="limits for comparability",
        **options,  # type: ignore[arg-type]
    )


def test_limits_from_verification_batches_are_mean_plus_minus_three_sd(plant: Plant) -> None:
    verification = made(plant, plant.reference, [92.0, 94.0, 93.0, 95.5])
    limit = approve(plant, basis=LimitBasis.VERIFICATION, batches=[b.number for b in verification])
    values = [92.0, 94.0, 93.0, 95.5]
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    assert float(limit.centre) == pytest.approx(mean, abs=1e-4)
    assert float(limit.lower) == pytest.approx(mean - 3 * sd, abs=1e-4)
    assert float(limit.upper) == pytest.approx(mean + 3 * sd, abs=1e-4)
    assert float(limit.sigma) == pytest.approx(sd, abs=1e-4)
    assert limit.n == 4
    assert limit.reference_site == plant.reference
    assert limit.approval_signature is not None
    assert signature_is_valid(limit.approval_signature, limit)
    assert AuditEvent.objects.filter(event_type="batches.reference_limits_approved").count() == 1


def test_limits_stay_fixed_until_reapproved(plant: Plant) -> None:
    """SO-09: new results never move the limits; approving again supersedes them."""
    first = approve(plant)
    made(plant, plant.reference, [60.0, 61.0, 62.0])
    first.refresh_from_db()
    assert (first.lower, first.upper) == (80, 100)
    second = approve(plant, lower="85", upper="99")
    first.refresh_from_db()
    assert first.status == LimitStatus.SUPERSEDED
    assert second.status == LimitStatus.ACTIVE
    assert selectors.active_limit(plant.product, "viability") == second


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"lower": "95", "upper": "90"}, "limits_inverted"),
        ({"lower": "90", "upper": "90"}, "limits_inverted"),
        ({"margin": "0"}, "invalid_margin"),
        ({"margin": "-1"}, "invalid_margin"),
        ({"margin": "abc"}, "invalid_value"),
        ({"key": "nope"}, "unknown_cqa"),
        ({"basis": "guess"}, "invalid_basis"),
        ({"basis": LimitBasis.VERIFICATION, "batches": []}, "verification_batches"),
        ({"basis": LimitBasis.VERIFICATION, "batches": ["X1", "X2", "X3"]}, "verification_batches"),
    ],
)
def test_bad_limits_are_refused_and_nothing_is_written(
    plant: Plant, kwargs: dict[str, object], code: str
) -> None:
    events = AuditEvent.objects.count()
    with pytest.raises(ApplicationError) as refused:
        approve(plant, **kwargs)
    assert refused.value.code == code
    assert refused.value.status_code == 400
    assert not ReferenceLimit.objects.exists()
    assert AuditEvent.objects.count() == events


def test_a_drifting_site_raises_one_run_rule_signal_and_one_deviation(plant: Plant) -> None:
    """Issue 8 §5: a signal opens exactly one deviation however often it is evaluated."""
    limit = approve(plant, lower="80", upper="100")  # centre 90, sigma 3.33
    made(plant, plant.reference, [89.0, 91.0, 90.5, 89.5, 90.0])
    made(plant, plant.spoke, [91.0, 92.5, 91.5, 93.0, 92.0, 91.2, 92.8, 91.7, 92.2])  # nine above
    for _ in range(3):
        services.comparability_evaluate(product_id=plant.product.pk)
    signals = ComparabilitySignal.objects.filter(kind=ComparabilitySignalKind.RUN_RULE)
    assert [(s.site, s.rule) for s in signals] == [(plant.spoke, 2)]
    # The run grows by a point: still the same episode.
    made(plant, plant.spoke, [92.5])
    services.comparability_evaluate(product_id=plant.product.pk)
    assert signals.count() == 1
    signal = signals.get()
    assert signal.detail["points"] == 10
    assert deviation_services.signals_process() >= 1
    assert deviation_services.signals_process() == 0
    deviation = Deviation.objects.get(comparability_signal=signal)
    assert deviation.site == plant.spoke
    assert "Rule 2" in deviation.title or "rule 2" in deviation.title.lower()
    snapshot = ComparabilitySnapshot.objects.get(limit=limit, site=plant.spoke)
    assert snapshot.rule_breaks == 1


def test_one_excursion_breaking_several_rules_is_one_signal(plant: Plant) -> None:
    """Rules 1 and 2 broken by the same run of results: one signal, one deviation."""
    approve(plant, lower="80", upper="100")  # centre 90, limits at 3 SD: 80 and 100
    made(plant, plant.spoke, [95.0, 96.0, 95.5, 97.0, 96.2, 95.8, 96.5, 101.0, 102.0, 101.5])
    services.comparability_evaluate(product_id=plant.product.pk)
    signal = ComparabilitySignal.objects.get(kind=ComparabilitySignalKind.RUN_RULE)
    assert signal.detail["rules"] == [1, 2]
    assert signal.rule == 1
    assert signal.detail["points"] == 10
    deviation_services.signals_process()
    assert Deviation.objects.filter(comparability_signal__isnull=False).count() == 1


def test_a_failed_result_beyond_the_limits_is_not_signalled_twice(plant: Plant) -> None:
    """A result outside its specification already opens a deviation from the batch record;
    the chart does not open a second one for the same point."""
    approve(plant, lower="80", upper="100")
    made(plant, plant.spoke, [91.0, 89.0, 60.0])  # 60 % fails the ≥ 70 % specification
    services.comparability_evaluate(product_id=plant.product.pk)
    assert not ComparabilitySignal.objects.exists()


def test_equivalence_not_shown_raises_one_signal(plant: Plant) -> None:
    approve(plant, margin="2")
    made(plant, plant.reference, CLEAN)
    made(plant, plant.spoke, [v - 6 for v in CLEAN])  # 6 % lower: far outside ± 2
    assert services.comparability_evaluate(product_id=plant.product.pk) >= 1
    services.comparability_evaluate(product_id=plant.product.pk)
    equivalence = ComparabilitySignal.objects.filter(kind=ComparabilitySignalKind.EQUIVALENCE)
    assert equivalence.count() == 1
    snapshot = ComparabilitySnapshot.objects.get(site=plant.spoke)
    assert snapshot.verdict == Verdict.NOT_SHOWN
    assert snapshot.equivalence["difference"] == pytest.approx(-6.0)


def test_a_comparable_site_raises_nothing(plant: Plant) -> None:
    approve(plant, margin="3", lower="82", upper="102")  # centre 92: the results straddle it
    made(plant, plant.reference, CLEAN)
    made(plant, plant.spoke, list(reversed(CLEAN)))
    assert services.comparability_evaluate(product_id=plant.product.pk) == 0
    assert ComparabilitySnapshot.objects.get(site=plant.spoke).verdict == Verdict.COMPARABLE
    rows = selectors.comparability_table(
        selectors.active_limit(plant.product, "viability"),  # type: ignore[arg-type]
        selectors.Window.last_days(),
        sites=selectors.comparability_sites(plant.product),
    )
    assert [(r.site.code, r.verdict) for r in rows] == [("LDS1", ""), ("MAN2", "comparable")]


def test_results_recorded_evaluate_after_commit(
    plant: Plant, django_capture_on_commit_callbacks: object
) -> None:
    approve(plant, margin="2")
    made(plant, plant.reference, CLEAN)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        made(plant, plant.spoke, [v - 6 for v in CLEAN])
    assert ComparabilitySnapshot.objects.get(site=plant.spoke).verdict == Verdict.NOT_SHOWN


#
# The annual check (SO-09)
#


def scheduled(plant: Plant) -> ComparabilityCheck:
    return services.check_schedule(
        actor=plant.qa,
        product=plant.product,
        site=plant.spoke,
        due_on=timezone.localdate() + dt.timedelta(days=30),
        reason="yearly check",
    )


def pairs(shift: float) -> list[PairEntry]:
    return [
        PairEntry("viability", f"LOT-{i}", value, value + shift)
        for i, value in enumerate([92.0, 93.5, 91.0, 94.0, 92.5])
    ]


def test_annual_check_records_pairs_and_is_reviewed_with_a_signature(plant: Plant) -> None:
    approve(plant, margin="3")
    check = scheduled(plant)
    with pytest.raises(ConflictError):
        scheduled(plant)  # one open check per product and site
    check = services.check_record(
        actor=plant.qa, check=check, material="SM-2026-07 split", pairs=pairs(0.3), reason="in"
    )
    assert check.status == CheckStatus.RECORDED
    assert check.verdict == Verdict.COMPARABLE
    assert check.statistics[0]["n_site"] == 5
    reviewed = services.check_review(
        actor=plant.qa,
        check=check,
        conclusion="Comparable.",
        credentials=signing(plant.qa),
        reason="annual review",
    )
    assert reviewed.status == CheckStatus.REVIEWED
    assert reviewed.review_signature is not None
    assert signature_is_valid(reviewed.review_signature, reviewed)
    following = ComparabilityCheck.objects.get(site=plant.spoke, status=CheckStatus.SCHEDULED)
    assert following.due_on == timezone.localdate() + dt.timedelta(days=365)
    assert not ComparabilitySignal.objects.exists()


def test_a_failed_check_opens_one_deviation(plant: Plant) -> None:
    approve(plant, margin="1")
    check = services.check_record(
        actor=plant.qa, check=scheduled(plant), material="SM-1", pairs=pairs(-4), reason="in"
    )
    assert check.verdict == Verdict.NOT_SHOWN
    services.check_review(
        actor=plant.qa,
        check=check,
        conclusion="Not comparable: investigate.",
        credentials=signing(plant.qa),
        reason="annual review",
    )
    deviation_services.signals_process()
    deviation_services.signals_process()
    assert Deviation.objects.filter(comparability_signal__kind="annual_check").count() == 1


def test_an_overdue_check_is_reminded_once_to_qa_and_the_site_lead(plant: Plant) -> None:
    """SO-09: the day after the due date QA and the site's leads get one notice linking to the
    check, and an audit event records it; the next days send nothing more."""
    check = scheduled(plant)
    assert services.checks_overdue_remind(today=check.due_on) == 0  # due today: not late
    late = check.due_on + dt.timedelta(days=1)
    assert services.checks_overdue_remind(today=late) == 1
    assert services.checks_overdue_remind(today=late + dt.timedelta(days=1)) == 0
    check.refresh_from_db()
    assert check.overdue_notified_on == late
    notices = Notification.objects.filter(subject__startswith="Comparability check of MAN2")
    assert {n.recipient_id for n in notices} == {plant.qa.pk, plant.lead.pk}
    assert {n.link for n in notices} == {reverse("batches:comparability-check", args=[check.pk])}
    event = AuditEvent.objects.get(event_type=ComparabilityEvent.CHECK_OVERDUE)
    assert (event.extra_data["days_late"], event.site_code) == (1, "MAN2")
    assert check.history.first().history_change_reason == "comparability check overdue"


@pytest.mark.parametrize(
    "entries",
    [
        [PairEntry("viability", "LOT-1", "92", None)],
        [PairEntry("viability", "LOT-1", "", "92")],
        [*pairs(0), PairEntry("viability", "LOT-9", "92", "")],
    ],
)
def test_unpaired_results_are_refused_and_nothing_is_written(
    plant: Plant, entries: list[PairEntry]
) -> None:
    approve(plant)
    check = scheduled(plant)
    with pytest.raises(ApplicationError) as refused:
        services.check_record(
            actor=plant.qa, check=check, material="SM-1", pairs=entries, reason="in"
        )
    assert refused.value.code == "unpaired_results"
    assert refused.value.status_code == 400
    assert not CheckPair.objects.exists()
    check.refresh_from_db()
    assert check.status == CheckStatus.SCHEDULED


def test_checks_are_scheduled_yearly_for_active_manufacturing_sites(plant: Plant) -> None:
    assert services.checks_schedule_due() == 1
    assert services.checks_schedule_due() == 0
    check = ComparabilityCheck.objects.get()
    assert check.site == plant.spoke  # never the reference site
    assert check.due_on == timezone.localdate() + dt.timedelta(days=365)


def test_a_person_cannot_schedule_a_check_already_late(plant: Plant) -> None:
    """A due date before today is refused (400) and nothing is written; the yearly schedule
    alone may find a check already late."""
    events = AuditEvent.objects.count()
    with pytest.raises(ApplicationError) as refused:
        services.check_schedule(
            actor=plant.qa,
            product=plant.product,
            site=plant.spoke,
            due_on=timezone.localdate() - dt.timedelta(days=1),
            reason="late",
        )
    assert (refused.value.status_code, refused.value.code) == (400, "due_in_past")
    assert not ComparabilityCheck.objects.exists()
    assert AuditEvent.objects.count() == events
    today = services.check_schedule(
        actor=plant.qa,
        product=plant.product,
        site=plant.spoke,
        due_on=timezone.localdate(),
        reason="due today",
    )
    assert today.due_on == timezone.localdate()


def test_only_qa_approves_limits(plant: Plant) -> None:
    with pytest.raises(ApplicationError) as refused:
        services.reference_limit_approve(
            actor=plant.operator,
            product=plant.product,
            key="viability",
            basis=LimitBasis.SPECIFICATION,
            margin="2",
            credentials=signing(plant.operator),
            reason="try",
            lower="80",
            upper="100",
        )
    assert refused.value.status_code == 403
