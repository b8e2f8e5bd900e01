"""Writes for comparability: approving reference limits, evaluating sites against them (and
raising signals once), and the annual check (issue 8; SO-08, SO-09, ES-*, AT-01).

Every write checks the role, locks what it changes, records why, signs where a signature is
due and writes the audit trail. Evaluation is the system's own work (a Celery task after results
are recorded, and a periodic sweep): it writes snapshots and outbox rows, never GMP records.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from batches.choices import (
    CHECK_INTERVAL_DAYS,
    CHECK_OPEN,
    CHECK_PAIRS_MAX,
    JUSTIFICATION_MAX,
    LIMIT_BATCHES_MAX,
    LIMIT_BATCHES_MIN,
    VALUE_DECIMAL_PLACES,
    CheckStatus,
    ComparabilitySignalKind,
    LimitBasis,
    LimitStatus,
)
from batches.comparability import selectors
from batches.events import ComparabilityEvent
from batches.models import (
    Batch,
    CheckPair,
    ComparabilityCheck,
    ComparabilitySignal,
    ComparabilitySnapshot,
    ReferenceLimit,
)
from batches.services import parse_decimal, parse_optional_decimal, parse_text
from batches.stats import (
    Rule,
    RuleBreak,
    Summary,
    Verdict,
    nelson_breaks,
    paired_equivalence,
    welch_equivalence,
)
from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.audit.context import audit_context
from controlsite.audit.history import create_with_history
from controlsite.audit.services import audit_event_record
from controlsite.errors import ApplicationError, ConflictError, require_reason
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import SignatureCredentials, sign, signing_transaction
from masterfile.models import Product
from sites.models import Site

_QUANTUM = Decimal(1).scaleb(-VALUE_DECIMAL_PLACES)


def _q(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def _require_quality(actor: User, what: str) -> None:
    permissions.require(actor, Capability.MANAGE_QUALITY_RECORDS, f"Only Control Site QA {what}.")


def _evaluate_later(product_id: int, site_ids: list[int] | None) -> None:
    from batches import tasks

    transaction.on_commit(lambda: tasks.comparability_evaluate.delay(product_id, site_ids))


#
# Reference limits (SO-09)
#


@dataclasses.dataclass(frozen=True)
class _Limits:
    centre: Decimal
    lower: Decimal
    upper: Decimal
    sigma: Decimal
    n: int
    batches: list[str]


def _margin(value: Any) -> Decimal:
    margin = parse_decimal(value, field="Equivalence margin")
    if margin <= 0:
        raise ApplicationError(
            "The equivalence margin must be above zero: it is the largest mean difference from "
            "the reference site that still counts as comparable.",
            code="invalid_margin",
        )
    return _q(margin)


def _from_verification(
    product: Product, key: str, numbers: Sequence[str] | None, lower: Any, upper: Any
) -> _Limits:
    if lower not in (None, "") or upper not in (None, ""):
        raise ApplicationError(
            "Limits from verification batches are computed (mean ± 3 SD); do not give them.",
            code="limits_computed",
        )
    numbers = sorted({str(n).strip() for n in (numbers or []) if str(n).strip()})
    if not LIMIT_BATCHES_MIN <= len(numbers) <= LIMIT_BATCHES_MAX:
        raise ApplicationError(
            f"Choose {LIMIT_BATCHES_MIN}–{LIMIT_BATCHES_MAX} verification batches of the reference "
            f"site; {len(numbers)} given.",
            code="verification_batches",
        )
    found = dict(
        selectors.cqa_results(product.pk, key)
        .filter(batch__number__in=numbers, batch__site_id=product.reference_site_id)
        .values_list("batch__number", "value")
    )
    missing = [n for n in numbers if n not in found]
    if missing:
        raise ApplicationError(
            f"{', '.join(missing[:5])}: not a batch of {product.code} at the reference site with a "
            f"{key} result.",
            code="verification_batches",
            extra={"batches": missing},
        )
    values = [float(found[n]) for n in numbers]
    mean = statistics.fmean(values)
    sd = statistics.stdev(values)
    if sd <= 0:
        raise ConflictError(
            "The verification results are all the same: there is no spread to set limits from. "
            "Use the specification instead.",
            code="no_spread",
        )
    return _Limits(_q(mean), _q(mean - 3 * sd), _q(mean + 3 * sd), _q(sd), len(values), numbers)


def _from_specification(cqa: selectors.Cqa, lower: Any, upper: Any) -> _Limits:
    low = parse_optional_decimal(lower, field="Lower limit")
    high = parse_optional_decimal(upper, field="Upper limit")
    low = cqa.low if low is None else low
    high = cqa.high if high is None else high
    if low is None or high is None:
        raise ApplicationError(
            f"{cqa.name} has a one-sided specification: give both limits.",
            code="open_specification",
        )
    if low >= high:
        raise ApplicationError(
            f"The lower limit ({low}) must be below the upper limit ({high}).",
            code="limits_inverted",
        )
    return _Limits(_q((low + high) / 2), _q(low), _q(high), _q((high - low) / 6), 0, [])


def reference_limit_approve(
    *,
    actor: User,
    product: Product,
    key: str,
    basis: str,
    margin: Any,
    credentials: SignatureCredentials,
    reason: str,
    batches: Sequence[str] | None = None,
    lower: Any = None,
    upper: Any = None,
) -> ReferenceLimit:
    """Approve the reference limits of one CQA with QA's e-signature ("approved"); the limits
    in force before are superseded. From verification batches: mean ± 3 SD of their results at
    the reference site; from the specification: its limits (or tighter ones given). Nothing is
    written when anything is wrong (SO-09, ES-01)."""
    _require_quality(actor, "approves reference limits")
    reason = require_reason(reason)
    cqa = next((c for c in selectors.product_cqas(product) if c.key == key), None)
    if cqa is None:
        raise ApplicationError(f"{product.code} has no CQA {str(key)[:40]!r}.", code="unknown_cqa")
    if basis not in LimitBasis.values:
        raise ApplicationError(
            f"Basis must be one of: {', '.join(LimitBasis.values)}.", code="invalid_basis"
        )
    margin_value = _margin(margin)
    if basis == LimitBasis.VERIFICATION:
        limits = _from_verification(product, key, batches, lower, upper)
    else:
        if batches:
            raise ApplicationError(
                "Verification batches are only used with the verification basis.",
                code="verification_batches",
            )
        limits = _from_specification(cqa, lower, upper)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        now = timezone.now()
        previous = (
            ReferenceLimit.objects.select_for_update()
            .filter(product=product, key=key, status=LimitStatus.ACTIVE)
            .first()
        )
        if previous is not None:
            previous.status = LimitStatus.SUPERSEDED
            previous.superseded_at = now
            previous.save(update_fields=["status", "superseded_at", "updated_at"])
        limit = ReferenceLimit.objects.create(
            product=product,
            key=key,
            name=cqa.name,
            unit=cqa.unit,
            reference_site_id=product.reference_site_id,
            basis=basis,
            centre=limits.centre,
            lower=limits.lower,
            upper=limits.upper,
            sigma=limits.sigma,
            margin=margin_value,
            n=limits.n,
            source_batches=limits.batches,
            approved_at=now,
            approved_by=actor,
            created_by=actor,
        )
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=limit,
            meaning=SignatureMeaning.APPROVED,
            reason=reason,
        )
        limit.approval_signature = signature
        limit.save(update_fields=["approval_signature", "updated_at"])
        if previous is not None:
            audit_event_record(
                event_type=ComparabilityEvent.LIMITS_SUPERSEDED,
                actor=actor,
                target=previous,
                reason=reason,
                extra={"product": product.code, "key": key, "by": limit.pk},
            )
        audit_event_record(
            event_type=ComparabilityEvent.LIMITS_APPROVED,
            actor=actor,
            target=limit,
            reason=reason,
            signature=signature,
            extra={
                "product": product.code,
                "key": key,
                "basis": basis,
                "lower": format(limit.lower, "f"),
                "upper": format(limit.upper, "f"),
                "centre": format(limit.centre, "f"),
                "margin": format(limit.margin, "f"),
                "batches": limits.batches,
            },
        )
        _evaluate_later(product.pk, None)
    return limit


#
# Evaluation and signals (issue 8 §5)
#


def _raise(signal: ComparabilitySignal) -> bool:
    """Insert the outbox row unless this episode already has one; True if it is new. The
    unique constraint decides, so two evaluations at once still raise it once."""
    try:
        with transaction.atomic():
            signal.save(force_insert=True)
    except IntegrityError:
        return False
    audit_event_record(
        event_type=ComparabilityEvent.SIGNAL_RAISED,
        as_system=True,
        target=signal,
        site_code=signal.site.code,
        extra={
            "kind": signal.kind,
            "product": signal.product.code,
            "key": signal.key,
            "rule": signal.rule,
            **signal.detail,
        },
    )
    return True


@dataclasses.dataclass
class _Episode:
    """Breaks of the run rules that overlap or touch, as one excursion: one signal, one
    deviation, whichever rules it breaks."""

    start: int
    end: int
    trigger: int
    rules: set[int]


def _episodes(
    series: Sequence[selectors.SeriesPoint], breaks: Sequence[RuleBreak]
) -> list[_Episode]:
    spans = sorted(
        (b.start, b.end, b.points[0], int(b.rule))
        for b in breaks
        # A point beyond the limits that failed its specification has already opened its own
        # deviation (and OOS investigation) from the batch record.
        if not (b.rule == Rule.BEYOND_3SD and not series[b.start].passed)
    )
    episodes: list[_Episode] = []
    for start, end, trigger, rule in spans:
        last = episodes[-1] if episodes else None
        if last is not None and start <= last.end + 1:
            last.end = max(last.end, end)
            last.trigger = min(last.trigger, trigger)
            last.rules.add(rule)
        else:
            episodes.append(_Episode(start, end, trigger, {rule}))
    return episodes


def _rules_text(rules: Iterable[int]) -> str:
    return "; ".join(Rule(rule).label for rule in sorted(rules))


def _rule_signals(limit: ReferenceLimit, site: Site) -> tuple[int, int]:
    """Raise one signal per excursion in the site's latest results against the limits: the
    breaks of Nelson rules 1-4 that overlap or touch make one episode. An episode that grows,
    or breaks another rule, or that the window now starts inside, keeps its first signal
    (issue 8 §5: once per signal, not once per evaluation). Returns (breaks, raised)."""
    series = selectors.site_series(
        limit.product_id, limit.key, site.pk, latest=selectors.RULE_WINDOW
    )
    if not series:
        return 0, 0
    breaks = nelson_breaks([p.value for p in series], float(limit.centre), float(limit.sigma))
    episodes = _episodes(series, breaks)
    if not episodes:
        return len(breaks), 0
    ids = [p.result_id for p in series]
    known = list(
        ComparabilitySignal.objects.filter(
            product_id=limit.product_id,
            key=limit.key,
            site=site,
            kind=ComparabilitySignalKind.RUN_RULE,
        ).filter(Q(first_result_id__in=ids) | Q(last_result_id__in=ids))
    )
    raised = 0
    for episode in episodes:
        run = series[episode.start : episode.end + 1]
        inside = {p.result_id for p in run}
        first, last, trigger = run[0], run[-1], series[episode.trigger]
        same = next((s for s in known if {s.first_result_id, s.last_result_id} & inside), None)
        if same is not None:
            rules = set(same.detail.get("rules", [])) | episode.rules
            if same.last_result_id != last.result_id or rules != set(same.detail.get("rules", [])):
                same.last_result_id = last.result_id
                same.detail = {
                    **same.detail,
                    "rules": sorted(rules),
                    "rule": _rules_text(rules),
                    "points": len(run),
                    "last_batch": last.batch_number,
                }
                same.save(update_fields=["last_result", "detail"])
            continue
        signal = ComparabilitySignal(
            kind=ComparabilitySignalKind.RUN_RULE,
            product=limit.product,
            key=limit.key,
            site=site,
            limit=limit,
            batch_id=trigger.batch_id,
            rule=min(episode.rules),
            episode=f"run-{first.result_id}",
            first_result_id=first.result_id,
            last_result_id=last.result_id,
            detail={
                "rules": sorted(episode.rules),
                "rule": _rules_text(episode.rules),
                "cqa": limit.name,
                "batch": trigger.batch_number,
                "value": trigger.value,
                "first_batch": first.batch_number,
                "last_batch": last.batch_number,
                "points": len(run),
                "limits": limit.limits_label,
            },
        )
        if _raise(signal):
            raised += 1
            known.append(signal)
    return len(breaks), raised


def comparability_evaluate(
    *, product_id: int, site_ids: Iterable[int] | None = None, now: dt.datetime | None = None
) -> int:
    """Evaluate sites of a product against every CQA's limits in force: store each site's
    snapshot (statistics and verdict) and raise a signal for each new run-rule episode and for
    a failed equivalence — once per episode, however often this runs (issue 8 §5). Returns
    how many signals were raised. Idempotent; run by Celery after results are recorded and by
    a periodic sweep."""
    product = Product.objects.select_related("reference_site").filter(pk=product_id).first()
    if product is None:
        return 0
    limits = list(
        ReferenceLimit.objects.filter(product=product, status=LimitStatus.ACTIVE).select_related(
            "product", "reference_site"
        )
    )
    if not limits:
        return 0
    now = now or timezone.now()
    window = selectors.Window.last_days(now=now)
    sites = selectors.comparability_sites(product)
    if site_ids is not None:
        wanted = set(site_ids)
        sites = [s for s in sites if s.pk in wanted]
    raised = 0
    with audit_context(reason="comparability evaluation"):
        for limit in limits:
            summaries = selectors.site_summaries(product.pk, limit.key, window)
            reference = summaries.get(limit.reference_site_id)
            snapshots = []
            for site in sites:
                with transaction.atomic():
                    breaks, new = _rule_signals(limit, site)
                    raised += new
                    summary = summaries.get(site.pk) or Summary.of([])
                    if site.pk == limit.reference_site_id or reference is None:
                        verdict = "" if site.pk == limit.reference_site_id else "too_little_data"
                        equivalence: dict[str, Any] = {}
                    else:
                        result = welch_equivalence(summary, reference, float(limit.margin))
                        verdict = result.verdict.value
                        equivalence = result.as_dict()
                        if result.verdict == Verdict.NOT_SHOWN:
                            signal = ComparabilitySignal(
                                kind=ComparabilitySignalKind.EQUIVALENCE,
                                product=product,
                                key=limit.key,
                                site=site,
                                limit=limit,
                                episode=f"limit-{limit.pk}",
                                detail={
                                    "cqa": limit.name,
                                    "difference": equivalence.get("difference"),
                                    "ci_low": equivalence.get("ci_low"),
                                    "ci_high": equivalence.get("ci_high"),
                                    "margin": format(limit.margin, "f"),
                                    "n_site": summary.n,
                                    "n_reference": reference.n,
                                },
                            )
                            raised += int(_raise(signal))
                    snapshots.append(
                        ComparabilitySnapshot(
                            limit=limit,
                            site=site,
                            n=summary.n,
                            mean=summary.mean,
                            sd=summary.sd,
                            verdict=verdict,
                            equivalence=equivalence,
                            rule_breaks=breaks,
                            evaluated_at=now,
                        )
                    )
            ComparabilitySnapshot.objects.bulk_create(
                snapshots,
                update_conflicts=True,
                unique_fields=["limit", "site"],
                update_fields=[
                    "n",
                    "mean",
                    "sd",
                    "verdict",
                    "equivalence",
                    "rule_breaks",
                    "evaluated_at",
                ],
            )
    return raised


def comparability_sweep() -> int:
    """Evaluate every product with limits in force (the periodic safety net)."""
    product_ids = (
        ReferenceLimit.objects.filter(status=LimitStatus.ACTIVE)
        .values_list("product_id", flat=True)
        .distinct()
    )
    return sum(comparability_evaluate(product_id=pid) for pid in list(product_ids))


def results_recorded(batch: Batch) -> None:
    """Called in the transaction that recorded results: evaluate after commit. A result at the
    reference site moves every site's comparison; one elsewhere moves only that site's."""
    reference = batch.product.reference_site_id  # the batch was locked with its product
    _evaluate_later(batch.product_id, None if batch.site_id == reference else [batch.site_id])


#
# The annual comparability check (SO-09)
#


def _lock_check(check: ComparabilityCheck) -> ComparabilityCheck:
    return (
        ComparabilityCheck.objects.select_for_update()
        .select_related("product", "site", "reference_site")
        .get(pk=check.pk)
    )


def _require_status(check: ComparabilityCheck, *allowed: CheckStatus) -> None:
    if check.status not in allowed:
        raise ConflictError(
            f"The check is {check.get_status_display().lower()}; this needs "
            f"{' or '.join(str(s.label).lower() for s in allowed)}.",
            code="invalid_transition",
        )


def check_schedule(
    *,
    actor: User | None,
    product: Product,
    site: Site,
    due_on: dt.date,
    reason: str,
) -> ComparabilityCheck:
    """Schedule a site's comparability check against the product's reference site. One open
    check per product and site (409 `check_open`); never at the reference site itself; a person
    gives today or a later due date (400 `due_in_past`)."""
    if actor is not None:
        _require_quality(actor, "schedules comparability checks")
    reason = require_reason(reason)
    if site.pk == product.reference_site_id:
        raise ConflictError(
            f"{site.code} is {product.code}'s reference site: it is the baseline, not checked "
            "against itself.",
            code="reference_site",
        )
    if not isinstance(due_on, dt.date):
        raise ApplicationError("Give the due date.", code="invalid_date")
    if actor is not None and due_on < timezone.localdate():
        # The yearly schedule (actor None) may find a check already late; a person may not
        # schedule one late.
        raise ApplicationError(
            f"The due date {due_on:%d %b %Y} has passed: give today or a later date.",
            code="due_in_past",
        )
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        if ComparabilityCheck.objects.filter(
            product=product, site=site, status__in=CHECK_OPEN
        ).exists():
            raise ConflictError(
                f"{site.code} already has an open comparability check for {product.code}.",
                code="check_open",
            )
        try:
            with transaction.atomic():
                check = ComparabilityCheck.objects.create(
                    product=product,
                    site=site,
                    reference_site_id=product.reference_site_id,
                    due_on=due_on,
                    created_by=actor,
                )
        except IntegrityError:
            raise ConflictError(
                f"{site.code} already has an open comparability check for {product.code}.",
                code="check_open",
            ) from None
        audit_event_record(
            event_type=ComparabilityEvent.CHECK_SCHEDULED,
            actor=actor,
            as_system=actor is None,
            target=check,
            reason=reason,
            site_code=site.code,
            extra={"product": product.code, "due_on": due_on},
        )
    return check


def checks_schedule_due(*, today: dt.date | None = None) -> int:
    """Give every active manufacturing site of every product an open check (the yearly cycle
    of SO-09): due a year after its last reviewed check, or a year after the site was linked.
    Returns how many were scheduled. Run by Celery beat."""
    from masterfile.choices import ProductSiteRole
    from masterfile.selectors import live_product_sites
    from sites.choices import SiteStatus

    today = today or timezone.localdate()
    links = (
        live_product_sites()
        .filter(role=ProductSiteRole.MANUFACTURING, site__status=SiteStatus.ACTIVE)
        .select_related("product", "site")
    )
    open_pairs = set(
        ComparabilityCheck.objects.filter(status__in=CHECK_OPEN).values_list(
            "product_id", "site_id"
        )
    )
    last = {
        (row["product_id"], row["site_id"]): row["last"]
        for row in ComparabilityCheck.objects.filter(status=CheckStatus.REVIEWED)
        .values("product_id", "site_id")
        .annotate(last=Max("reviewed_at"))
    }
    made = 0
    for link in links:
        pair = (link.product_id, link.site_id)
        if pair in open_pairs or link.site_id == link.product.reference_site_id:
            continue
        since = last.get(pair) or link.created_at
        due = timezone.localdate(since) + dt.timedelta(days=CHECK_INTERVAL_DAYS)
        try:
            check_schedule(
                actor=None,
                product=link.product,
                site=link.site,
                due_on=due,
                reason="yearly comparability check",
            )
        except ConflictError:
            continue
        made += 1
    return made


def checks_overdue_remind(*, today: dt.date | None = None) -> int:
    """Tell Control Site QA and the site's leads, once, that a comparability check has passed
    its due date (SO-09), with a link to the check; each reminder is an audit event. Returns
    how many checks were reminded of. Run daily by Celery beat, after the yearly schedule."""
    from controlsite.accounts.roles import Role
    from controlsite.accounts.selectors import users_holding
    from controlsite.notifications.services import notify
    from sites.selectors import site_leads

    today = today or timezone.localdate()
    due = ComparabilityCheck.objects.filter(
        status__in=CHECK_OPEN, due_on__lt=today, overdue_notified_on=None
    ).values_list("pk", flat=True)
    reminded = 0
    for pk in list(due):
        with transaction.atomic(), audit_context(reason="comparability check overdue"):
            check = (
                ComparabilityCheck.objects.select_for_update(of=("self",))
                .select_related("product", "site")
                .get(pk=pk)
            )
            if check.overdue_notified_on is not None or not check.is_overdue(today):
                continue  # told by a run meanwhile, or recorded and reviewed since
            check.overdue_notified_on = today
            check.save(update_fields=["overdue_notified_on", "updated_at"])
            late = (today - check.due_on).days
            audit_event_record(
                event_type=ComparabilityEvent.CHECK_OVERDUE,
                target=check,
                as_system=True,
                site_code=check.site.code,
                extra={"product": check.product.code, "due_on": check.due_on, "days_late": late},
            )
            notify(
                recipients=[*users_holding(Role.CONTROL_SITE_QA), *site_leads(check.site)],
                subject=f"Comparability check of {check.site.code} for {check.product.code} "
                f"overdue since {check.due_on:%d %b %Y}",
                body=(
                    f"The yearly comparability check of {check.site.code} against the reference "
                    f"site for {check.product.name} was due on {check.due_on:%d %B %Y}. Split "
                    "starting material between the two sites, record the paired results and "
                    "have QA review them."
                ),
                link=reverse("batches:comparability-check", args=[check.pk]),
                severity="warn",
            )
            reminded += 1
    return reminded


@dataclasses.dataclass(frozen=True)
class PairEntry:
    """One CQA on one portion of split material: the reference site's value and the site's."""

    key: str
    lot: str
    reference_value: Any
    site_value: Any


def _pairs(check: ComparabilityCheck, entries: Sequence[PairEntry]) -> list[CheckPair]:
    if not entries:
        raise ApplicationError("Send at least one pair of results.", code="no_results")
    if len(entries) > CHECK_PAIRS_MAX:
        raise ApplicationError(
            f"{len(entries):,} pairs; the limit is {CHECK_PAIRS_MAX}.", code="too_many_results"
        )
    cqas = {c.key: c for c in selectors.product_cqas(check.product)}
    pairs, seen = [], set()
    for index, entry in enumerate(entries):
        key = str(entry.key or "").strip()
        if key not in cqas:
            raise ApplicationError(
                f"Pair {index + 1}: {check.product.code} has no CQA {key[:40]!r}.",
                code="unknown_cqa",
                extra={"pair": index},
            )
        if entry.reference_value in (None, "") or entry.site_value in (None, ""):
            raise ApplicationError(
                f"Pair {index + 1} ({key}): both the reference site's and the site's result are "
                "needed — a result without its pair cannot be compared.",
                code="unpaired_results",
                extra={"pair": index},
            )
        lot = parse_text(entry.lot, field=f"Pair {index + 1} lot", limit=64)
        if (key, lot) in seen:
            raise ApplicationError(
                f"Pair {index + 1}: {key} on {lot} appears twice.",
                code="duplicate_pair",
                extra={"pair": index},
            )
        seen.add((key, lot))
        pairs.append(
            CheckPair(
                comparability_check=check,
                key=key,
                lot=lot,
                reference_value=parse_decimal(
                    entry.reference_value, field=f"Pair {index + 1} reference value"
                ),
                site_value=parse_decimal(entry.site_value, field=f"Pair {index + 1} site value"),
            )
        )
    return pairs


def check_statistics(
    check: ComparabilityCheck, pairs: Sequence[CheckPair]
) -> tuple[str, list[Any]]:
    """Paired statistics per CQA against the margin of the limits in force, and the overall
    verdict: not shown if any CQA is not shown, too little data if any has too few pairs."""
    by_key: dict[str, list[CheckPair]] = {}
    for pair in pairs:
        by_key.setdefault(pair.key, []).append(pair)
    limits = {
        lim.key: lim
        for lim in ReferenceLimit.objects.filter(
            product_id=check.product_id, key__in=list(by_key), status=LimitStatus.ACTIVE
        )
    }
    missing = sorted(set(by_key) - set(limits))
    if missing:
        raise ConflictError(
            f"{', '.join(missing)}: no reference limits in force, so no equivalence margin. "
            "Approve the limits first.",
            code="no_reference_limits",
            extra={"keys": missing},
        )
    rows = []
    verdicts = set()
    for key in sorted(by_key):
        limit = limits[key]
        result = paired_equivalence(
            [(p.reference_value, p.site_value) for p in by_key[key]], float(limit.margin)
        )
        verdicts.add(result.verdict)
        rows.append({"key": key, "name": limit.name, "unit": limit.unit, **result.as_dict()})
    if Verdict.NOT_SHOWN in verdicts:
        verdict = Verdict.NOT_SHOWN
    elif Verdict.TOO_LITTLE_DATA in verdicts:
        verdict = Verdict.TOO_LITTLE_DATA
    else:
        verdict = Verdict.COMPARABLE
    return verdict.value, rows


def check_record(
    *,
    actor: User,
    check: ComparabilityCheck,
    material: str,
    pairs: Sequence[PairEntry],
    reason: str,
) -> ComparabilityCheck:
    """Record the paired results of the split starting material, all or none, and compute
    the statistics; the check then awaits QA's review. A result without its pair is refused
    (400 `unpaired_results`) and nothing is written."""
    _require_quality(actor, "records comparability check results")
    reason = require_reason(reason)
    material = parse_text(material, field="Split starting material", limit=120)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_check(check)
        _require_status(locked, CheckStatus.SCHEDULED)
        rows = _pairs(locked, pairs)
        verdict, stats = check_statistics(locked, rows)
        create_with_history(rows)
        now = timezone.now()
        locked.material = material
        locked.status = CheckStatus.RECORDED
        locked.recorded_at = now
        locked.recorded_by = actor
        locked.verdict = verdict
        locked.statistics = stats
        locked.save(
            update_fields=[
                "material",
                "status",
                "recorded_at",
                "recorded_by",
                "verdict",
                "statistics",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=ComparabilityEvent.CHECK_RECORDED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            extra={
                "old": CheckStatus.SCHEDULED,
                "new": CheckStatus.RECORDED,
                "pairs": len(rows),
                "verdict": verdict,
            },
        )
    return locked


def check_review(
    *,
    actor: User,
    check: ComparabilityCheck,
    conclusion: str,
    credentials: SignatureCredentials,
    reason: str,
) -> ComparabilityCheck:
    """QA reviews the statistics and signs ("reviewed"). A check that does not show
    comparability raises a signal (one deviation). The next year's check is scheduled."""
    _require_quality(actor, "reviews comparability checks")
    reason = require_reason(reason)
    conclusion = parse_text(conclusion, field="Conclusion", limit=JUSTIFICATION_MAX)
    with signing_transaction(), audit_context(reason=reason, user=actor):
        locked = _lock_check(check)
        _require_status(locked, CheckStatus.RECORDED)
        locked.conclusion = conclusion
        locked.save(update_fields=["conclusion", "updated_at"])
        signature = sign(
            signer=actor,
            credentials=credentials,
            record=locked,
            meaning=SignatureMeaning.REVIEWED,
            reason=reason,
            site_code=locked.site.code,
        )
        locked.status = CheckStatus.REVIEWED
        locked.reviewed_at = timezone.now()
        locked.reviewed_by = actor
        locked.review_signature = signature
        locked.save(
            update_fields=["status", "reviewed_at", "reviewed_by", "review_signature", "updated_at"]
        )
        audit_event_record(
            event_type=ComparabilityEvent.CHECK_REVIEWED,
            actor=actor,
            target=locked,
            reason=reason,
            signature=signature,
            site_code=locked.site.code,
            extra={
                "old": CheckStatus.RECORDED,
                "new": CheckStatus.REVIEWED,
                "verdict": locked.verdict,
            },
        )
        if locked.verdict == Verdict.NOT_SHOWN:
            failing = [
                row["key"] for row in locked.statistics if row["verdict"] == Verdict.NOT_SHOWN
            ]
            _raise(
                ComparabilitySignal(
                    kind=ComparabilitySignalKind.ANNUAL_CHECK,
                    product=locked.product,
                    key=failing[0] if failing else "",
                    site=locked.site,
                    comparability_check=locked,
                    episode=f"check-{locked.pk}",
                    detail={"cqas": failing, "material": locked.material},
                )
            )
        check_schedule(
            actor=actor,
            product=locked.product,
            site=locked.site,
            due_on=timezone.localdate() + dt.timedelta(days=CHECK_INTERVAL_DAYS),
            reason="next yearly comparability check",
        )
    return locked


def check_cancel(*, actor: User, check: ComparabilityCheck, reason: str) -> ComparabilityCheck:
    """Cancel an open check (the site ceased, say), with a reason."""
    _require_quality(actor, "cancels comparability checks")
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=actor):
        locked = _lock_check(check)
        _require_status(locked, CheckStatus.SCHEDULED, CheckStatus.RECORDED)
        old = locked.status
        locked.status = CheckStatus.CANCELLED
        locked.save(update_fields=["status", "updated_at"])
        audit_event_record(
            event_type=ComparabilityEvent.CHECK_CANCELLED,
            actor=actor,
            target=locked,
            reason=reason,
            site_code=locked.site.code,
            extra={"old": old, "new": CheckStatus.CANCELLED},
        )
    return locked
