"""The comparability pages (issue 8 §1-4, §8; SO-07, SO-08, SO-09).

- `/batches/comparability/`: every product with reference limits, each CQA's per-site verdicts
  (from the last evaluation) and the overdue annual checks;
- `/batches/comparability/<product>/`: per CQA, the limits in force with QA's signature, each
  site's statistics against the reference site and a forest plot of the 90 % confidence
  intervals against ± margin; a fixed number of queries whatever the number of sites;
- `/batches/comparability/<product>/<key>/<site>/`: the site's control chart (and `chart.svg`),
  its flagged points and its signals;
- `/batches/comparability/<product>/limits/`: QA approves a CQA's limits with a signature;
- `/batches/comparability/checks/…`: the annual checks, scheduled, recorded, reviewed, cancelled.

Views stay thin: they fetch through a selector (what someone may not see is a 404), bind a form,
call ONE service and redirect. A refusal re-renders the page with the form as typed and the
service's message under the service's status code (400 bad input, 403 not allowed, 409 refused
by the lifecycle, 422 signature refused). `batches` must not import `deviations` (design §2): a
signal shows whether it has been turned into a deviation and links to the site's deviations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from batches.charts import ChartPoint, control_chart_svg
from batches.choices import (
    CHECK_BADGE,
    CHECK_OPEN,
    VERDICT_BADGE,
    CheckStatus,
    ComparabilitySignalKind,
    LimitBasis,
    LimitStatus,
)
from batches.comparability import selectors, services
from batches.comparability.forms import (
    ROWS_MAX,
    ROWS_START,
    ROWS_STEP,
    CheckCancelForm,
    CheckFilterForm,
    CheckRecordForm,
    CheckReviewForm,
    CheckScheduleForm,
    LimitApproveForm,
    WindowForm,
)
from batches.models import (
    ComparabilityCheck,
    ComparabilitySignal,
    ComparabilitySnapshot,
    ReferenceLimit,
)
from batches.stats import Rule, RuleBreak, Verdict, flagged_points, nelson_breaks
from controlsite.accounts import permissions
from controlsite.accounts.http import request_user
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.accounts.scope import token_site_limit
from controlsite.errors import ApplicationError, PermissionRefusedError
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import (
    SignatureRefusedError,
    signature_is_valid,
    signatures_for,
)
from masterfile.models import Product
from masterfile.selectors import products_visible_to
from sites.models import Site
from sites.selectors import sites_visible_to

CHECKS_SHOWN = 200
FLAGGED_SHOWN = 20
SIGNALS_SHOWN = 50
HISTORY_SHOWN = 50
VERIFICATION_CHOICES_MAX = 100

#
# Small helpers
#


def _is_qa(user: Any) -> bool:
    return permissions.user_can(user, Capability.MANAGE_QUALITY_RECORDS)


def _sees_all(user: Any) -> bool:
    return permissions.user_can(user, Capability.VIEW_ALL_SITES) and token_site_limit(user) is None


def _require(request: HttpRequest, allowed: bool) -> User:
    user = request_user(request)
    if not allowed:
        raise PermissionDenied
    return user


def _refused(request: HttpRequest, exc: ApplicationError) -> int:
    """Show a service's refusal as a message; its status code answers the request."""
    if isinstance(exc, PermissionRefusedError):
        raise PermissionDenied(exc.message) from exc
    messages.error(request, exc.message)
    return exc.status_code


def _invalid(request: HttpRequest, what: str) -> int:
    messages.error(request, f"{what}: correct the fields marked below.")
    return 400


def _signature_form(
    request: HttpRequest, meaning: SignatureMeaning, prefix: str, data: Any = None
) -> SignatureForm:
    form = SignatureForm(data, request=request, meaning=meaning, prefix=prefix)
    # The dialog's heading id is built from this; two dialogs on a page must not share one.
    form.meaning_value = f"{meaning.value}-{prefix}"
    return form


def _signed(
    request: HttpRequest,
    sig: SignatureForm,
    again: Callable[[int], HttpResponse],
    call: Callable[[], Any],
    *,
    form: Any = None,
    fields: dict[str, str] | None = None,
) -> tuple[Any, HttpResponse | None]:
    """Run one signing service. A refused signature is shown inside the dialog; any other
    refusal as a message, and under the field it concerns where `fields` maps its code to one."""
    try:
        result = call()
    except SignatureRefusedError as exc:
        sig.add_error(None, exc.message)
        messages.error(request, exc.message)
        return None, again(exc.status_code)
    except ApplicationError as exc:
        status = _refused(request, exc)
        field = (fields or {}).get(exc.code)
        if form is not None and field is not None and field in form.fields:
            form.add_error(field, exc.message)
        return None, again(status)
    sig.mark_signed()
    return result, None


def _product_or_404(request: HttpRequest, code: str) -> Product:
    product = (
        products_visible_to(request.user)
        .select_related("reference_site")
        .filter(code=code.upper())
        .first()
    )
    if product is None:
        raise Http404("No such product")
    return product


def _check_or_404(request: HttpRequest, pk: int) -> ComparabilityCheck:
    check = selectors.checks_visible_to(request.user).filter(pk=pk).first()
    if check is None:
        raise Http404("No such check")
    return check


def _num(value: float | None, digits: int = 4) -> str:
    """A statistic for people: `digits` significant figures and a real minus sign."""
    if value is None:
        return "—"
    return f"{value:.{digits}g}".replace("-", "−")


def _signed_num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}g}".replace("-", "−")


def _p_value(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def _dec(value: Any) -> str:
    """A stored decimal as typed: no exponent, no trailing zeros."""
    return format(value.normalize(), "f") if value is not None else "—"


def _limit_values(limit: ReferenceLimit) -> dict[str, str]:
    unit = f" {limit.unit}" if limit.unit else ""
    return {
        "centre": _dec(limit.centre) + unit,
        "lower": _dec(limit.lower) + unit,
        "upper": _dec(limit.upper) + unit,
        "sigma": _dec(limit.sigma) + unit,
        "margin": f"± {_dec(limit.margin)}{unit}",
    }


def _verdict_badge(verdict: str) -> dict[str, str]:
    if not verdict:
        return {"label": "Reference site", "colour": "info"}
    return {"label": Verdict(verdict).label, "colour": VERDICT_BADGE.get(verdict, "muted")}


def _window_days(request: HttpRequest) -> int:
    return WindowForm(request.GET or None).window_days(selectors.WINDOW_DAYS)


def _chart_url(product: Product, key: str, site: Site, suffix: str = "") -> str:
    name = "batches:comparability-chart-svg" if suffix else "batches:comparability-site"
    return reverse(name, args=[product.code, key, site.code])


def _site_deviations_url(site: Site) -> str:
    # By name only: batches never imports deviations (design §2).
    return f"{reverse('deviations:index')}?site={site.code}"


#
# The forest plot: each site's 90 % CI of the mean difference against ± margin
#

# Drawn in the template (templates/batches/comparability/partials/_forest.html) from these
# coordinates: an inline SVG that looks the same at any size and needs no image request.
FOREST_WIDTH = 640
FOREST_LABELS = 112
FOREST_RIGHT = 24
FOREST_ROW = 26
FOREST_TOP = 12
FOREST_AXIS = 44
VERDICT_COLOUR = {
    Verdict.COMPARABLE.value: "#1b5e20",
    Verdict.NOT_SHOWN.value: "#a11a1a",
    Verdict.TOO_LITTLE_DATA.value: "#6b7580",
}


@dataclasses.dataclass(frozen=True)
class ForestEntry:
    label: str
    href: str
    verdict: str
    difference: float | None
    ci_low: float | None
    ci_high: float | None


@dataclasses.dataclass(frozen=True)
class ForestRow:
    label: str
    href: str
    colour: str
    y: float
    point: float | None
    low: float | None
    high: float | None
    text: str
    hollow: bool

    @property
    def text_y(self) -> float:
        return self.y + 4

    @property
    def hit_y(self) -> float:
        return self.y - FOREST_ROW / 2

    @property
    def cap_top(self) -> float:
        return self.y - 5


@dataclasses.dataclass(frozen=True)
class Forest:
    uid: str
    width: int
    height: int
    left: float
    right: float
    top: float
    axis_y: float
    zone_left: float
    zone_right: float
    zero: float
    ticks: list[tuple[float, str]]
    rows: list[ForestRow]
    title: str
    description: str
    axis_label: str

    @property
    def zone_width(self) -> float:
        return round(self.zone_right - self.zone_left, 1)

    @property
    def zone_height(self) -> float:
        return self.axis_y - self.top

    @property
    def tick_y(self) -> float:
        return self.axis_y + 18

    @property
    def axis_label_y(self) -> float:
        return self.axis_y + 36

    @property
    def label_x(self) -> float:
        return self.left - 10

    @property
    def row_height(self) -> int:
        return FOREST_ROW


def forest(
    entries: Sequence[ForestEntry],
    *,
    margin: float,
    unit: str,
    title: str,
    uid: str,
    width: int = FOREST_WIDTH,
    labels: int = FOREST_LABELS,
    axis_label: str = "",
) -> Forest:
    """Coordinates of a forest plot: the equivalence zone (± margin) shaded, zero marked, and
    for each entry its mean difference as a dot with its 90 % CI as a bar, coloured by verdict.
    An entry with too little data shows its difference hollow (no interval) or nothing."""
    margin = float(margin)
    spread = [margin]
    for e in entries:
        spread += [abs(v) for v in (e.difference, e.ci_low, e.ci_high) if v is not None]
    extent = max(spread) * 1.15
    left, right = float(labels), float(width - FOREST_RIGHT)

    def x(value: float) -> float:
        return round(left + (value + extent) / (2 * extent) * (right - left), 1)

    rows, described = [], []
    suffix = f" {unit}" if unit else ""
    for i, e in enumerate(entries):
        y = FOREST_TOP + FOREST_ROW * i + FOREST_ROW / 2
        verdict = e.verdict or Verdict.TOO_LITTLE_DATA.value
        label = Verdict(verdict).label.lower()
        if e.difference is None:
            text = f"{e.label}: no results to compare — {label}"
        elif e.ci_low is None or e.ci_high is None:
            text = f"{e.label}: difference {_signed_num(e.difference)}{suffix} — {label}"
        else:
            text = (
                f"{e.label}: difference {_signed_num(e.difference)}{suffix} (90 % CI "
                f"{_signed_num(e.ci_low)} to {_signed_num(e.ci_high)}) — {label}"
            )
        described.append(text)
        rows.append(
            ForestRow(
                label=e.label,
                href=e.href,
                colour=VERDICT_COLOUR[verdict],
                y=y,
                point=None if e.difference is None else x(e.difference),
                low=None if e.ci_low is None else x(e.ci_low),
                high=None if e.ci_high is None else x(e.ci_high),
                text=text,
                hollow=e.ci_low is None,
            )
        )
    axis_y = FOREST_TOP + FOREST_ROW * max(len(entries), 1) + 4
    ticks = [
        (x(-margin), f"{_signed_num(-margin)}"),
        (x(0.0), "0"),
        (x(margin), f"{_signed_num(margin)}"),
    ]
    return Forest(
        uid=uid,
        width=width,
        height=int(axis_y + FOREST_AXIS),
        left=left,
        right=right,
        top=FOREST_TOP - 4,
        axis_y=axis_y,
        zone_left=x(-margin),
        zone_right=x(margin),
        zero=x(0.0),
        ticks=ticks,
        rows=rows,
        title=title,
        description=f"Equivalence margin ± {_num(margin)}{suffix}. " + "; ".join(described),
        axis_label=axis_label
        or f"Mean difference from the reference site{f' ({unit})' if unit else ''}, "
        "90 % confidence interval",
    )


#
# The overview (issue 8 §8)
#


@dataclasses.dataclass(frozen=True)
class LimitSummary:
    limit: ReferenceLimit
    comparable: int
    not_shown: int
    too_little: int
    with_breaks: int
    evaluated_at: dt.datetime | None

    @property
    def values(self) -> dict[str, str]:
        return _limit_values(self.limit)


@dataclasses.dataclass
class ProductSummary:
    product: Product
    limits: list[LimitSummary]
    open_checks: int = 0
    overdue_checks: int = 0

    @property
    def flagged(self) -> bool:
        return any(s.not_shown or s.with_breaks for s in self.limits) or self.overdue_checks > 0


def _visible_site_filter(user: Any, field: str = "site") -> Q:
    if _sees_all(user):
        return Q()
    return Q(**{f"{field}__in": sites_visible_to(user)})


def _overview_context(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    today = timezone.localdate()
    products = list(products_visible_to(user).select_related("reference_site").order_by("code"))
    limits = list(
        selectors.limits_visible_to(user)
        .filter(status=LimitStatus.ACTIVE)
        .order_by("product__code", "key")
    )
    # One grouped query for every limit's verdict counts, over the sites the user may see.
    counts: dict[int, dict[str, Any]] = {}
    snapshots = (
        ComparabilitySnapshot.objects.filter(limit__in=[lim.pk for lim in limits])
        .filter(_visible_site_filter(user))
        .values("limit_id", "verdict")
        .annotate(
            n=Count("id"),
            breaks=Count("id", filter=Q(rule_breaks__gt=0)),
            last=Max("evaluated_at"),
        )
    )
    for row in snapshots:
        entry = counts.setdefault(row["limit_id"], {"breaks": 0, "last": None})
        entry[row["verdict"]] = row["n"]
        entry["breaks"] += row["breaks"]
        if entry["last"] is None or (row["last"] and row["last"] > entry["last"]):
            entry["last"] = row["last"]
    checks = (
        selectors.checks_visible_to(user)
        .filter(status__in=CHECK_OPEN)
        .values("product_id")
        .annotate(open=Count("id"), overdue=Count("id", filter=Q(due_on__lt=today)))
    )
    by_product_checks = {row["product_id"]: row for row in checks}
    summaries: dict[int, ProductSummary] = {}
    for limit in limits:
        c = counts.get(limit.pk, {})
        summary = summaries.setdefault(
            limit.product_id, ProductSummary(product=limit.product, limits=[])
        )
        summary.limits.append(
            LimitSummary(
                limit=limit,
                comparable=c.get(Verdict.COMPARABLE.value, 0),
                not_shown=c.get(Verdict.NOT_SHOWN.value, 0),
                too_little=c.get(Verdict.TOO_LITTLE_DATA.value, 0),
                with_breaks=c.get("breaks", 0),
                evaluated_at=c.get("last"),
            )
        )
    for product_id, summary in summaries.items():
        found = by_product_checks.get(product_id)
        if found:
            summary.open_checks, summary.overdue_checks = found["open"], found["overdue"]
    ordered = [summaries[p.pk] for p in products if p.pk in summaries]
    return {
        "summaries": ordered,
        "without_limits": [p for p in products if p.pk not in summaries],
        "overdue_total": sum(s.overdue_checks for s in ordered),
        "is_qa": _is_qa(user),
        "badges": {v.value: {"label": v.label, "colour": VERDICT_BADGE[v.value]} for v in Verdict},
    }


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """Products with limits, each CQA's per-site verdicts and the overdue annual checks."""
    return render(request, "batches/comparability/overview.html", _overview_context(request))


#
# One product (issue 8 §1, §3)
#


@dataclasses.dataclass(frozen=True)
class SiteRow:
    site: Site
    is_reference: bool
    n: int
    mean: str
    sd: str
    difference: str
    ci: str
    p_tost: str
    badge: dict[str, str]
    signals: int
    href: str
    check: ComparabilityCheck | None
    check_overdue: bool
    flagged: bool


@dataclasses.dataclass(frozen=True)
class LimitPanel:
    limit: ReferenceLimit
    signature_valid: bool
    rows: list[SiteRow]
    forest: Forest | None
    counts: dict[str, int]

    @property
    def values(self) -> dict[str, str]:
        return _limit_values(self.limit)


def _site_rows(
    product: Product,
    limit: ReferenceLimit,
    table: Sequence[selectors.SiteComparability],
    checks: dict[int, ComparabilityCheck],
    today: dt.date,
) -> list[SiteRow]:
    rows = []
    for r in table:
        eq = r.equivalence
        ci = "—"
        if eq is not None and eq.ci_low is not None and eq.ci_high is not None:
            ci = f"{_signed_num(eq.ci_low)} to {_signed_num(eq.ci_high)}"
        check = checks.get(r.site.pk)
        rows.append(
            SiteRow(
                site=r.site,
                is_reference=r.is_reference,
                n=r.summary.n,
                mean=_num(r.summary.mean),
                sd=_num(r.summary.sd, 3),
                difference="—" if eq is None else _signed_num(eq.difference),
                ci=ci,
                p_tost="—" if eq is None else _p_value(eq.p_tost),
                badge=r.badge,
                signals=r.signals,
                href=_chart_url(product, limit.key, r.site),
                check=check,
                check_overdue=check is not None and check.is_overdue(today),
                flagged=r.verdict == Verdict.NOT_SHOWN.value or r.signals > 0,
            )
        )
    return rows


def _product_context(request: HttpRequest, product: Product) -> dict[str, Any]:
    user = request.user
    days = _window_days(request)
    window = selectors.Window.last_days(days)
    today = timezone.localdate()
    sites = selectors.comparability_sites(product, user=user)
    limits = list(
        selectors.limits_visible_to(user)
        .filter(product=product, status=LimitStatus.ACTIVE)
        .order_by("key")
    )
    checks = {
        c.site_id: c
        for c in ComparabilityCheck.objects.filter(
            product=product, status__in=CHECK_OPEN, site__in=[s.pk for s in sites]
        )
    }
    panels = []
    for limit in limits:
        table = selectors.comparability_table(limit, window, sites=sites)
        rows = _site_rows(product, limit, table, checks, today)
        entries = [
            ForestEntry(
                label=r.site.code,
                href=_chart_url(product, limit.key, r.site),
                verdict=r.verdict,
                difference=r.equivalence.difference if r.equivalence else None,
                ci_low=r.equivalence.ci_low if r.equivalence else None,
                ci_high=r.equivalence.ci_high if r.equivalence else None,
            )
            for r in table
            if not r.is_reference
        ]
        counts = {v.value: sum(1 for r in table if r.verdict == v.value) for v in Verdict}
        panels.append(
            LimitPanel(
                limit=limit,
                signature_valid=limit.approval_signature is not None
                and signature_is_valid(limit.approval_signature, limit),
                rows=rows,
                forest=forest(
                    entries,
                    margin=float(limit.margin),
                    unit=limit.unit,
                    title=f"{limit.name}: each site's mean difference from "
                    f"{limit.reference_site.code}",
                    uid=f"forest-{limit.key}",
                )
                if entries
                else None,
                counts=counts,
            )
        )
    with_limits = {lim.key for lim in limits}
    return {
        "product": product,
        "panels": panels,
        "without_limits": [c for c in selectors.product_cqas(product) if c.key not in with_limits],
        "window_form": WindowForm(request.GET or None, initial={"days": days}),
        "days": days,
        "is_qa": _is_qa(user),
        "badges": {v.value: {"label": v.label, "colour": VERDICT_BADGE[v.value]} for v in Verdict},
    }


@login_required
@require_GET
def product_detail(request: HttpRequest, code: str) -> HttpResponse:
    """Per CQA: the limits in force, each site against the reference site, the forest plot."""
    product = _product_or_404(request, code)
    return render(request, "batches/comparability/product.html", _product_context(request, product))


#
# One site's control chart (issue 8 §2)
#


@dataclasses.dataclass(frozen=True)
class FlaggedPoint:
    point: ChartPoint
    value: str
    rules: list[str]


@dataclasses.dataclass(frozen=True)
class Episode:
    """One rule's breaks in words: the run's extent, or rule 1's single points listed."""

    rule: str
    text: str


@dataclasses.dataclass(frozen=True)
class SignalRow:
    signal: ComparabilitySignal
    what: str


EPISODE_POINTS_NAMED = 8


def _episodes(points: Sequence[ChartPoint], breaks: Sequence[RuleBreak]) -> list[Episode]:
    out = []
    singles = [points[b.start].label for b in breaks if b.rule == Rule.BEYOND_3SD]
    if singles:
        named = ", ".join(singles[-EPISODE_POINTS_NAMED:][::-1])
        more = len(singles) - EPISODE_POINTS_NAMED
        out.append(
            Episode(
                Rule.BEYOND_3SD.label,
                f"{len(singles)} result{'s' if len(singles) != 1 else ''}, latest first: {named}"
                + (f" and {more} more" if more > 0 else ""),
            )
        )
    for b in breaks:
        if b.rule != Rule.BEYOND_3SD:
            count = b.end - b.start + 1
            out.append(
                Episode(
                    b.rule.label,
                    f"{count} results from {points[b.start].label} to {points[b.end].label}",
                )
            )
    return out


def _signal_what(signal: ComparabilitySignal) -> str:
    detail = signal.detail or {}
    if signal.kind == ComparabilitySignalKind.RUN_RULE:
        points = detail.get("points") or 1
        extent = (
            f" ({points} results, {detail.get('first_batch')} to {detail.get('last_batch')})"
            if points > 1
            else ""
        )
        return f"{detail.get('rule', f'Rule {signal.rule}')}{extent}"
    if signal.kind == ComparabilitySignalKind.EQUIVALENCE:

        def number(key: str) -> float | None:
            value = detail.get(key)
            return None if value is None else float(value)

        return (
            f"Difference {_signed_num(number('difference'))} (90 % CI "
            f"{_signed_num(number('ci_low'))} to {_signed_num(number('ci_high'))}) against "
            f"± {_num(number('margin'))}; {detail.get('n_site')} results against "
            f"{detail.get('n_reference')}"
        )
    cqas = ", ".join(detail.get("cqas") or [signal.key])
    return f"Annual check not comparable: {cqas} ({detail.get('material', '')})"


@dataclasses.dataclass(frozen=True)
class Chart:
    product: Product
    limit: ReferenceLimit
    site: Site
    points: list[ChartPoint]
    reference: list[ChartPoint]
    breaks: list[RuleBreak]
    days: int

    def svg(self) -> str:
        return control_chart_svg(
            self.points,
            centre=float(self.limit.centre),
            lower=float(self.limit.lower),
            upper=float(self.limit.upper),
            title=f"{self.limit.name} at {self.site.code} ({self.product.code})",
            unit=self.limit.unit,
            reference=self.reference,
        )


def chart_of(
    product: Product, limit: ReferenceLimit, site: Site, sites: Sequence[Site], days: int
) -> Chart:
    """The site's results in the window with the Nelson rules flagged against the limits in
    force (never against limits computed from the data shown); the reference site's results
    in grey when it is among `sites` (those the user may see). The page, its SVG download and
    the API's chart all draw this."""
    window = selectors.Window.last_days(days)
    series = selectors.site_series(product.pk, limit.key, site.pk, window)
    breaks = (
        nelson_breaks([p.value for p in series], float(limit.centre), float(limit.sigma))
        if series
        else []
    )
    flags = flagged_points(breaks)
    points = [
        ChartPoint(p.batch_number, p.when, p.value, tuple(flags.get(i, ())))
        for i, p in enumerate(series)
    ]
    reference: list[ChartPoint] = []
    reference_visible = any(s.pk == limit.reference_site_id for s in sites)
    if site.pk != limit.reference_site_id and reference_visible:
        reference = [
            ChartPoint(p.batch_number, p.when, p.value)
            for p in selectors.site_series(product.pk, limit.key, limit.reference_site_id, window)
        ]
    return Chart(product, limit, site, points, reference, breaks, days)


def _chart(request: HttpRequest, code: str, key: str, site_code: str) -> Chart:
    product = _product_or_404(request, code)
    limit = selectors.active_limit(product, key)
    if limit is None:
        raise Http404("No reference limits in force for this CQA")
    sites = selectors.comparability_sites(product, user=request.user)
    site = next((s for s in sites if s.code == site_code.upper()), None)
    if site is None:
        raise Http404("No such site")
    return chart_of(product, limit, site, sites, _window_days(request))


def svg_response(svg: str, filename: str) -> HttpResponse:
    """A standalone SVG, never sniffed as anything else, running and fetching nothing."""
    response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def site_chart(request: HttpRequest, code: str, key: str, site_code: str) -> HttpResponse:
    """The site's individuals chart against the reference limits, its flagged points and its
    signals (issue 8 §2, §5)."""
    chart = _chart(request, code, key, site_code)
    flagged = [
        FlaggedPoint(p, _num(p.value, 6), [Rule(r).label for r in p.rules])
        for p in chart.points
        if p.rules
    ][::-1][:FLAGGED_SHOWN]
    table = selectors.comparability_table(
        chart.limit, selectors.Window.last_days(chart.days), sites=[chart.site]
    )
    row = _site_rows(chart.product, chart.limit, table, {}, timezone.localdate())[0]
    signals = [
        SignalRow(s, _signal_what(s))
        for s in ComparabilitySignal.objects.filter(
            product=chart.product, key=chart.limit.key, site=chart.site
        )
        .select_related("batch")
        .order_by("-created_at", "-id")[:SIGNALS_SHOWN]
    ]
    context = {
        "product": chart.product,
        "limit": chart.limit,
        "values": _limit_values(chart.limit),
        "site": chart.site,
        "svg": mark_safe(chart.svg()),  # noqa: S308  (matplotlib's output; texts escaped there)
        "svg_url": _chart_url(chart.product, chart.limit.key, chart.site, "svg")
        + (f"?days={chart.days}" if chart.days != selectors.WINDOW_DAYS else ""),
        "points": len(chart.points),
        "reference_points": len(chart.reference),
        "flagged": flagged,
        "flagged_total": sum(1 for p in chart.points if p.rules),
        "episodes": _episodes(chart.points, chart.breaks),
        "row": row,
        "signals": signals,
        "deviations_url": _site_deviations_url(chart.site),
        "window_form": WindowForm(request.GET or None, initial={"days": chart.days}),
        "days": chart.days,
    }
    return render(request, "batches/comparability/site.html", context)


@login_required
@require_GET
def site_chart_svg(request: HttpRequest, code: str, key: str, site_code: str) -> HttpResponse:
    """The same chart as a standalone SVG file (issue 8 §8)."""
    chart = _chart(request, code, key, site_code)
    filename = f"{chart.product.code}-{chart.limit.key}-{chart.site.code}.svg"
    return svg_response(chart.svg(), filename)


#
# Reference limits: QA approves them with a signature (SO-09)
#

# A service refusal shown under the field it concerns.
LIMIT_ERROR_FIELDS = {
    "invalid_margin": "margin",
    "limits_inverted": "upper",
    "open_specification": "lower",
    "limits_computed": "lower",
    "verification_batches": "batches",
    "no_spread": "batches",
    "unknown_cqa": "key",
    "invalid_basis": "basis",
}


def _verification_choices(product: Product, key: str, unit: str) -> list[tuple[str, str]]:
    """The reference site's latest batches with a result for this CQA."""
    rows = (
        selectors.cqa_results(product.pk, key)
        .filter(batch__site_id=product.reference_site_id)
        .order_by("-batch__created_at", "-id")
        .values_list("batch__number", "value", "batch__created_at")[:VERIFICATION_CHOICES_MAX]
    )
    suffix = f" {unit}" if unit else ""
    return [
        (number, f"{number} — {value.normalize():f}{suffix} ({timezone.localtime(when):%d %b %Y})")
        for number, value, when in rows
    ]


# Limits in force are what the sites are compared with; superseded ones are history.
LIMIT_BADGE = {LimitStatus.ACTIVE.value: "ok", LimitStatus.SUPERSEDED.value: "muted"}


def _spec_label(cqa: selectors.Cqa) -> str:
    parts = []
    if cqa.low is not None:
        parts.append(f"≥ {_dec(cqa.low)}")
    if cqa.high is not None:
        parts.append(f"≤ {_dec(cqa.high)}")
    unit = f" {cqa.unit}" if cqa.unit else ""
    return (" and ".join(parts) + unit) if parts else "no limits"


def _limits_context(
    request: HttpRequest, product: Product, key: str, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    bound = bound or {}
    user = request.user
    cqas = selectors.product_cqas(product)
    cqa = next((c for c in cqas if c.key == key), cqas[0] if cqas else None)
    key = cqa.key if cqa else ""
    history = list(selectors.limit_history(product, key)[:HISTORY_SHOWN]) if cqa else []
    active = {
        lim.key
        for lim in ReferenceLimit.objects.filter(product=product, status=LimitStatus.ACTIVE).only(
            "key"
        )
    }
    is_qa = _is_qa(user)
    form = bound.get("form")
    if form is None and is_qa and cqa is not None:
        form = LimitApproveForm(
            cqas=cqas,
            batches=_verification_choices(product, key, cqa.unit),
            initial={"key": key, "basis": LimitBasis.VERIFICATION},
        )
    return {
        "product": product,
        "cqas": [(c, c.key in active) for c in cqas],
        "cqa": cqa,
        "spec_label": _spec_label(cqa) if cqa else "",
        "history": [
            (
                lim,
                lim.approval_signature is not None
                and signature_is_valid(lim.approval_signature, lim),
                _limit_values(lim),
                {"label": lim.get_status_display(), "colour": LIMIT_BADGE.get(lim.status, "muted")},
            )
            for lim in history
        ],
        "form": form,
        "sig": bound.get("sig") or _signature_form(request, SignatureMeaning.APPROVED, "lsig"),
        "is_qa": is_qa,
    }


@login_required
@require_GET
def limits(request: HttpRequest, code: str) -> HttpResponse:
    """A CQA's limit history and, for QA, the approval form."""
    product = _product_or_404(request, code)
    context = _limits_context(request, product, request.GET.get("key", ""))
    return render(request, "batches/comparability/limits.html", context)


@login_required
@require_POST
def limit_approve(request: HttpRequest, code: str) -> HttpResponse:
    """Approve a CQA's reference limits with the "approved" signature (SO-09, ES-01):
    services.reference_limit_approve. Nothing is written when anything is wrong."""
    product = _product_or_404(request, code)
    actor = _require(request, _is_qa(request.user))
    cqas = selectors.product_cqas(product)
    key = request.POST.get("limit-key", "")
    cqa = next((c for c in cqas if c.key == key), None)
    form = LimitApproveForm(
        request.POST,
        cqas=cqas,
        batches=_verification_choices(product, key, cqa.unit) if cqa else [],
    )
    sig = _signature_form(request, SignatureMeaning.APPROVED, "lsig", request.POST)
    bound = {"form": form, "sig": sig}

    def again(status: int) -> HttpResponse:
        context = _limits_context(request, product, key, bound)
        return render(request, "batches/comparability/limits.html", context, status=status)

    if not (form.is_valid() & sig.is_valid()):
        return again(_invalid(request, "Limits not approved"))
    data = form.cleaned_data
    verification = data["basis"] == LimitBasis.VERIFICATION
    limit, refused = _signed(
        request,
        sig,
        again,
        lambda: services.reference_limit_approve(
            actor=actor,
            product=product,
            key=data["key"],
            basis=data["basis"],
            margin=data["margin"],
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
            batches=data["batches"] if verification else None,
            lower=None if verification else data["lower"] or None,
            upper=None if verification else data["upper"] or None,
        ),
        form=form,
        fields=LIMIT_ERROR_FIELDS,
    )
    if refused is not None:
        return refused
    messages.success(
        request,
        f"{limit.name} limits {limit.limits_label} (margin ± {_dec(limit.margin)}) "
        "approved and signed; the sites are evaluated against them now.",
    )
    return redirect(f"{reverse('batches:comparability-product', args=[product.code])}#cqa-{key}")


#
# Annual checks (SO-09)
#


def _check_badge(check: ComparabilityCheck) -> dict[str, str]:
    return {"label": check.get_status_display(), "colour": CHECK_BADGE.get(check.status, "muted")}


def _schedule_choices(user: Any) -> tuple[QuerySet[Product], QuerySet[Site]]:
    return (
        products_visible_to(user).filter(reference_site__isnull=False).order_by("code"),
        sites_visible_to(user).order_by("code"),
    )


def _checks_context(request: HttpRequest, form: CheckScheduleForm | None = None) -> dict[str, Any]:
    user = request.user
    today = timezone.localdate()
    products, sites = _schedule_choices(user)
    filters = CheckFilterForm(
        request.GET or None, products=[(p.code, f"{p.code} — {p.name}") for p in products]
    )
    qs = selectors.checks_visible_to(user)
    if filters.is_valid():
        data = filters.cleaned_data
        if data["status"]:
            qs = qs.filter(status=data["status"])
        if data["product"]:
            qs = qs.filter(product__code=data["product"])
        if data["overdue"]:
            qs = qs.filter(status__in=CHECK_OPEN, due_on__lt=today)
    checks = list(qs.order_by("due_on", "id")[:CHECKS_SHOWN])
    is_qa = _is_qa(user)
    if form is None and is_qa:
        form = CheckScheduleForm(products=products, sites=sites)
    return {
        "rows": [
            (
                c,
                _check_badge(c),
                c.is_overdue(today),
                _verdict_badge(c.verdict) if c.verdict else None,
            )
            for c in checks
        ],
        "filters": filters,
        "overdue_count": selectors.checks_visible_to(user)
        .filter(status__in=CHECK_OPEN, due_on__lt=today)
        .count(),
        "schedule_form": form if is_qa else None,
    }


@login_required
@require_GET
def checks(request: HttpRequest) -> HttpResponse:
    """The annual checks, soonest due first, the overdue in red."""
    return render(request, "batches/comparability/checks.html", _checks_context(request))


@login_required
@require_POST
def check_schedule(request: HttpRequest) -> HttpResponse:
    """Schedule a site's annual check: services.check_schedule (QA)."""
    actor = _require(request, _is_qa(request.user))
    products, sites = _schedule_choices(actor)
    form = CheckScheduleForm(request.POST, products=products, sites=sites)

    def again(status: int) -> HttpResponse:
        context = _checks_context(request, form)
        return render(request, "batches/comparability/checks.html", context, status=status)

    if not form.is_valid():
        return again(_invalid(request, "Not scheduled"))
    try:
        check = services.check_schedule(
            actor=actor,
            product=form.cleaned_data["product"],
            site=form.cleaned_data["site"],
            due_on=form.cleaned_data["due_on"],
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        return again(_refused(request, exc))
    messages.success(
        request,
        f"Comparability check of {check.site.code} for {check.product.code} scheduled, due "
        f"{check.due_on:%d %b %Y}.",
    )
    return redirect("batches:comparability-check", pk=check.pk)


@dataclasses.dataclass(frozen=True)
class StatisticRow:
    key: str
    name: str
    unit: str
    n: int
    difference: str
    ci: str
    margin: str
    p_tost: str
    badge: dict[str, str]
    forest: Forest


def _statistic_rows(check: ComparabilityCheck) -> list[StatisticRow]:
    rows = []
    for stat in check.statistics:
        margin = float(stat["margin"])
        low, high = stat.get("ci_low"), stat.get("ci_high")
        rows.append(
            StatisticRow(
                key=stat["key"],
                name=stat.get("name", stat["key"]),
                unit=stat.get("unit", ""),
                n=stat.get("n_site", 0),
                difference=_signed_num(stat.get("difference")),
                ci="—"
                if low is None or high is None
                else f"{_signed_num(low)} to {_signed_num(high)}",
                margin=f"± {_num(margin)}",
                p_tost=_p_value(stat.get("p_tost")),
                badge=_verdict_badge(stat["verdict"]),
                forest=forest(
                    [
                        ForestEntry(
                            stat["key"], "", stat["verdict"], stat.get("difference"), low, high
                        )
                    ],
                    margin=margin,
                    unit=stat.get("unit", ""),
                    title=f"{stat.get('name', stat['key'])}: paired difference against ± margin",
                    uid=f"check-{check.pk}-{stat['key']}",
                    width=320,
                    labels=8,
                    axis_label="Paired difference, 90 % CI",
                ),
            )
        )
    return rows


def _check_context(
    request: HttpRequest, check: ComparabilityCheck, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    bound = bound or {}
    user = request.user
    is_qa = _is_qa(user)
    today = timezone.localdate()
    scheduled = check.status == CheckStatus.SCHEDULED
    recorded = check.status == CheckStatus.RECORDED
    record_form = bound.get("record")
    if record_form is None and is_qa and scheduled:
        record_form = CheckRecordForm(cqas=selectors.product_cqas(check.product), rows=ROWS_START)
    return {
        "check": check,
        "status": _check_badge(check),
        "overdue": check.is_overdue(today),
        "verdict": _verdict_badge(check.verdict) if check.verdict else None,
        "pairs": [
            (p, _dec(p.reference_value), _dec(p.site_value))
            for p in check.pairs.order_by("key", "lot")
        ],
        "statistics": _statistic_rows(check),
        "signatures": signatures_for(check) if check.review_signature_id else [],
        "record_form": record_form,
        "rows_step": ROWS_STEP,
        "rows_max": ROWS_MAX,
        "review_form": bound.get("review") or CheckReviewForm() if is_qa and recorded else None,
        "review_sig": bound.get("review_sig")
        or _signature_form(request, SignatureMeaning.REVIEWED, "rsig"),
        "cancel_form": bound.get("cancel") or CheckCancelForm()
        if is_qa and check.status in CHECK_OPEN
        else None,
        "open_form": next(iter(bound), ""),
        "product_url": reverse("batches:comparability-product", args=[check.product.code]),
        "deviations_url": _site_deviations_url(check.site),
    }


def _check_again(
    request: HttpRequest, check: ComparabilityCheck, bound: dict[str, Any], status: int
) -> HttpResponse:
    check.refresh_from_db()
    return render(
        request,
        "batches/comparability/check.html",
        _check_context(request, check, bound),
        status=status,
    )


@login_required
@require_GET
def check_detail(request: HttpRequest, pk: int) -> HttpResponse:
    check = _check_or_404(request, pk)
    return render(request, "batches/comparability/check.html", _check_context(request, check))


@login_required
@require_POST
def check_record(request: HttpRequest, pk: int) -> HttpResponse:
    """Record the paired results, all or none: services.check_record (QA). "Add rows" only
    re-renders the table with more rows, keeping what was typed."""
    check = _check_or_404(request, pk)
    actor = _require(request, _is_qa(request.user))
    cqas = selectors.product_cqas(check.product)
    if "more" in request.POST:
        typed = CheckRecordForm(request.POST, cqas=cqas)
        rows = min(typed.row_count + ROWS_STEP, ROWS_MAX)
        initial = {k.removeprefix("record-"): v for k, v in request.POST.items()}
        initial["rows"] = str(rows)
        form = CheckRecordForm(cqas=cqas, rows=rows, initial=initial)
        return _check_again(request, check, {"record": form}, 200)
    form = CheckRecordForm(request.POST, cqas=cqas)
    if not form.is_valid():
        return _check_again(request, check, {"record": form}, _invalid(request, "Not recorded"))
    try:
        recorded = services.check_record(
            actor=actor,
            check=check,
            material=form.cleaned_data["material"],
            pairs=form.entries(),
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        status = _refused(request, exc)
        form.add_error(None, exc.message)
        return _check_again(request, check, {"record": form}, status)
    verdict = Verdict(recorded.verdict).label.lower() if recorded.verdict else ""
    messages.success(
        request, f"Paired results recorded: {verdict}. The check awaits QA's signed review."
    )
    return redirect(reverse("batches:comparability-check", args=[check.pk]) + "#statistics")


@login_required
@require_POST
def check_review(request: HttpRequest, pk: int) -> HttpResponse:
    """QA's conclusion with the "reviewed" signature: services.check_review."""
    check = _check_or_404(request, pk)
    actor = _require(request, _is_qa(request.user))
    form = CheckReviewForm(request.POST)
    sig = _signature_form(request, SignatureMeaning.REVIEWED, "rsig", request.POST)
    bound = {"review": form, "review_sig": sig}
    if not (form.is_valid() & sig.is_valid()):
        return _check_again(request, check, bound, _invalid(request, "Not reviewed"))
    _done, refused = _signed(
        request,
        sig,
        lambda status: _check_again(request, check, bound, status),
        lambda: services.check_review(
            actor=actor,
            check=check,
            conclusion=form.cleaned_data["conclusion"],
            credentials=sig.credentials(),
            reason=sig.cleaned_data["reason"],
        ),
    )
    if refused is not None:
        return refused
    messages.success(request, "Check reviewed and signed; next year's check is scheduled.")
    return redirect(reverse("batches:comparability-check", args=[check.pk]) + "#review")


@login_required
@require_POST
def check_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel an open check with a reason: services.check_cancel (QA)."""
    check = _check_or_404(request, pk)
    actor = _require(request, _is_qa(request.user))
    form = CheckCancelForm(request.POST)
    if not form.is_valid():
        return _check_again(request, check, {"cancel": form}, _invalid(request, "Not cancelled"))
    try:
        services.check_cancel(actor=actor, check=check, reason=form.cleaned_data["reason"])
    except ApplicationError as exc:
        return _check_again(request, check, {"cancel": form}, _refused(request, exc))
    messages.success(request, "Check cancelled.")
    return redirect("batches:comparability-check", pk=check.pk)
