"""The batches app's sections of the annual report (issue 8 §7; MF-07, RP-01, SO-08, SO-09):

- **Batches per site**: made, certified (of which under concession), rejected and the
  certification rate, per site, in the period;
- **Comparability across sites**: per CQA, the reference limits in force, each site's n, mean,
  difference from the reference site with its 90 % confidence interval and verdict (the same
  statistics as the comparability page: `batches.comparability.selectors.comparability_table`),
  the run-rule breaks and signals, a control chart per site (`batches.charts`), and the annual
  checks due or reviewed in the period with their verdicts. This section also goes into the
  master file export as an annex (`annex=True`), collected for the last twelve months.

Registered in `BatchesConfig.ready()` with `controlsite.reports`. `collect_*` read in the
report's snapshot and return plain data; `draw_comparability` draws the charts afterwards,
outside any transaction.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

from django.db.models import Count, Q

from batches.choices import CHECK_OPEN, BatchStatus, CheckStatus, LimitBasis
from batches.comparability import selectors
from batches.models import Batch, ComparabilityCheck, ComparabilitySignal, ReferenceLimit
from batches.stats import Verdict, flagged_points, nelson_breaks
from controlsite import reports
from controlsite.reports import ReportScope, ReportSection
from controlsite.signatures.models import ElectronicSignature
from controlsite.signatures.services import signature_is_valid
from masterfile.choices import ProductSiteRole
from masterfile.models import Product, ProductSite
from masterfile.pdf import components_text
from sites.models import Site

BATCHES_SECTION = "batches"
COMPARABILITY_SECTION = "batches.comparability"
CERTIFIED = (BatchStatus.CERTIFIED, BatchStatus.CERTIFIED_UNDER_CONCESSION)
UNDECIDED = (BatchStatus.IN_PROGRESS, BatchStatus.COMPLETED)
VERDICT_LABELS = {v.value: v.label for v in Verdict}
# A document draws at most this many control charts (flagged sites first): each costs the PDF
# layout about a second and 10-25 MB held until the file is written (measured: 1,000 results
# per chart). The statistics table still lists every site.
CHARTS_MAX = 40
# The reference site's results drawn in grey behind a spoke's chart, evenly thinned to this many.
REFERENCE_POINTS_MAX = 200


def _utc(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds") if moment else None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _sites(ids: set[int], reference_id: int) -> list[Site]:
    return sorted(Site.objects.filter(pk__in=ids), key=lambda s: (s.pk != reference_id, s.code))


#
# Batches per site
#


def collect_batches(scope: ReportScope) -> dict[str, Any]:
    """Per site: batches started in the period, batches certified (and under concession) and
    rejected by a QP in the period, the certification rate (certified / decided) and the
    period's batches not decided yet. Two queries whatever the number of sites."""
    start, cutoff = scope.start_at, scope.cutoff
    started = Q(created_at__gte=start, created_at__lt=cutoff)
    decided = Q(decided_at__gte=start, decided_at__lt=cutoff)
    counts: dict[int, dict[str, Any]] = {
        row["site_id"]: dict(row)
        for row in Batch.objects.filter(product_id=scope.product_id)
        .filter(started | decided)
        .values("site_id")
        .annotate(
            made=Count("id", filter=started),
            certified=Count("id", filter=decided & Q(status__in=CERTIFIED)),
            concession=Count(
                "id", filter=decided & Q(status=BatchStatus.CERTIFIED_UNDER_CONCESSION)
            ),
            rejected=Count("id", filter=decided & Q(status=BatchStatus.REJECTED)),
            undecided=Count("id", filter=started & Q(status__in=UNDECIDED)),
        )
    }
    rows: list[dict[str, Any]] = []
    totals = dict.fromkeys(("made", "certified", "concession", "rejected", "undecided"), 0)
    for site in _sites(set(scope.site_ids) | set(counts), scope.reference_site_id):
        found = counts.get(site.pk, {})
        row: dict[str, int] = {key: int(found.get(key, 0)) for key in totals}
        for key in totals:
            totals[key] += row[key]
        rows.append(
            {
                "code": site.code,
                "name": site.name,
                "reference": site.pk == scope.reference_site_id,
                **row,
                "rate": _rate(row["certified"], row["rejected"]),
            }
        )
    return {
        "rows": rows,
        "totals": {**totals, "rate": _rate(totals["certified"], totals["rejected"])},
    }


def _rate(certified: int, rejected: int) -> float | None:
    decided = certified + rejected
    return round(100.0 * certified / decided, 1) if decided else None


#
# Comparability across sites
#


def _limit_dict(limit: ReferenceLimit) -> dict[str, Any]:
    return {
        "id": limit.pk,
        "basis": str(LimitBasis(limit.basis).label),
        "centre": float(limit.centre),
        "lower": float(limit.lower),
        "upper": float(limit.upper),
        "sigma": float(limit.sigma),
        "margin": float(limit.margin),
        "n": limit.n,
        "source_batches": list(limit.source_batches),
        "approved_at": _utc(limit.approved_at),
        "approved_by": limit.approved_by.printed_name,
        "superseded_at": _utc(limit.superseded_at),
        "reference_site": limit.reference_site.code,
    }


def _signature_dict(signature: ElectronicSignature | None, record: Any, what: str) -> list[Any]:
    if signature is None:
        return []
    return [
        {
            "record": what,
            "printed_name": signature.printed_name,
            "username": signature.signer_username,
            "meaning": str(signature.get_meaning_display()),
            "signed_at": f"{signature.signed_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}",
            "reason": signature.reason,
            "components": components_text(signature.components),
            "record_hash": signature.record_hash,
            "valid": signature_is_valid(signature, record),
        }
    ]


def _manufacturing_sites(scope: ReportScope) -> list[Site]:
    """The sites that made the product during the period (linked as manufacturing sites at any
    moment of it) and the reference site."""
    linked = (
        ProductSite.objects.filter(
            product_id=scope.product_id,
            role=ProductSiteRole.MANUFACTURING,
            created_at__lt=scope.cutoff,
        )
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=scope.start_at))
        .values_list("site_id", flat=True)
    )
    return _sites({*linked, scope.reference_site_id}, scope.reference_site_id)


def _cqa(
    scope: ReportScope,
    key: str,
    limits: list[ReferenceLimit],
    sites: list[Site],
    signals: dict[tuple[str, int], dict[str, int]],
) -> dict[str, Any]:
    """One CQA: the limits, each site's statistics against the reference site, the series to
    chart (drawn later) and the rule breaks in them."""
    limit = limits[-1]  # the latest approved before the cutoff is the one in force then
    window = selectors.Window(start=scope.start_at, end=scope.cutoff)
    table = selectors.comparability_table(limit, window, sites=sites)
    reference_series = selectors.site_series(scope.product_id, key, limit.reference_site_id, window)
    rows, series = [], []
    for entry in table:
        points = (
            reference_series
            if entry.site.pk == limit.reference_site_id
            else selectors.site_series(scope.product_id, key, entry.site.pk, window)
        )
        values = [p.value for p in points]
        breaks = nelson_breaks(values, float(limit.centre), float(limit.sigma)) if values else []
        flags = flagged_points(breaks)
        eq = entry.equivalence
        summary = entry.summary
        verdict = entry.verdict
        rows.append(
            {
                "code": entry.site.code,
                "name": entry.site.name,
                "reference": entry.is_reference,
                "n": summary.n,
                "mean": summary.mean,
                "sd": summary.sd,
                "difference": eq.difference if eq else None,
                "ci_low": eq.ci_low if eq else None,
                "ci_high": eq.ci_high if eq else None,
                "df": eq.df if eq else None,
                "p_tost": eq.p_tost if eq else None,
                "verdict": verdict,
                "verdict_label": VERDICT_LABELS.get(verdict, "Reference site"),
                "badge": entry.badge["colour"],
                "rule_breaks": len(breaks),
                "rules": sorted({int(b.rule) for b in breaks}),
                "signals": sum(signals.get((key, entry.site.pk), {}).values()),
                "signal_kinds": signals.get((key, entry.site.pk), {}),
            }
        )
        series.append(
            {
                "code": entry.site.code,
                "reference": entry.is_reference,
                "points": [
                    [p.batch_number, _utc(p.when), p.value, flags.get(i, [])]
                    for i, p in enumerate(points)
                ],
            }
        )
    verdicts = [r["verdict"] for r in rows if not r["reference"]]
    return {
        "key": key,
        "name": limit.name,
        "unit": limit.unit,
        "limit": _limit_dict(limit),
        "limits_in_period": [_limit_dict(lim) for lim in limits],
        "rows": rows,
        "series": series,
        "verdict_counts": {v.value: verdicts.count(v.value) for v in Verdict},
    }


def _check_dict(check: ComparabilityCheck, cutoff_date: dt.date) -> dict[str, Any]:
    reviewed_on = check.reviewed_at.astimezone(dt.UTC).date() if check.reviewed_at else None
    open_late = check.status in CHECK_OPEN and check.due_on < cutoff_date
    return {
        "code": check.site.code,
        "due_on": check.due_on.isoformat(),
        "status": str(check.get_status_display()),
        "material": check.material,
        "verdict": check.verdict,
        "verdict_label": VERDICT_LABELS.get(check.verdict, "—"),
        "reviewed_on": reviewed_on.isoformat() if reviewed_on else None,
        "reviewed_by": check.reviewed_by.printed_name if check.reviewed_by else "",
        "late": open_late or (reviewed_on is not None and reviewed_on > check.due_on),
        "overdue": open_late,
        "conclusion": check.conclusion,
        "statistics": [
            {
                "key": row.get("key"),
                "name": row.get("name"),
                "unit": row.get("unit", ""),
                "n": row.get("n_site"),
                "difference": row.get("difference"),
                "ci_low": row.get("ci_low"),
                "ci_high": row.get("ci_high"),
                "margin": row.get("margin"),
                "verdict": row.get("verdict"),
                "verdict_label": VERDICT_LABELS.get(row.get("verdict") or "", "—"),
            }
            for row in check.statistics
        ],
    }


def collect_comparability(scope: ReportScope) -> dict[str, Any]:
    """Comparability of every site with the reference site over the period, per CQA with
    reference limits, and the annual checks due or reviewed in it (SO-08, SO-09)."""
    start, cutoff = scope.start_at, scope.cutoff
    limits_by_key: dict[str, list[ReferenceLimit]] = {}
    for limit in (
        ReferenceLimit.objects.filter(product_id=scope.product_id, approved_at__lt=cutoff)
        .filter(Q(superseded_at__isnull=True) | Q(superseded_at__gte=start))
        .select_related("reference_site", "approved_by", "approval_signature")
        .order_by("key", "approved_at", "id")
    ):
        limits_by_key.setdefault(limit.key, []).append(limit)
    signals: dict[tuple[str, int], dict[str, int]] = {}
    for row in (
        ComparabilitySignal.objects.filter(
            product_id=scope.product_id, created_at__gte=start, created_at__lt=cutoff
        )
        .values("key", "site_id", "kind")
        .annotate(n=Count("id"))
    ):
        signals.setdefault((row["key"], row["site_id"]), {})[row["kind"]] = row["n"]
    sites = _manufacturing_sites(scope)
    cqas = [_cqa(scope, key, limits, sites, signals) for key, limits in limits_by_key.items()]
    product = Product.objects.get(pk=scope.product_id)
    without_limits = [c.name for c in selectors.product_cqas(product) if c.key not in limits_by_key]

    checks = list(
        ComparabilityCheck.objects.filter(product_id=scope.product_id)
        .filter(
            Q(status=CheckStatus.REVIEWED, reviewed_at__gte=start, reviewed_at__lt=cutoff)
            | (Q(due_on__gte=scope.start, due_on__lt=scope.end) & ~Q(status=CheckStatus.CANCELLED))
        )
        .select_related("site", "reviewed_by", "review_signature")
        .order_by("due_on", "site__code", "id")
    )
    reviewed = [
        c
        for c in checks
        if c.status == CheckStatus.REVIEWED and c.reviewed_at and start <= c.reviewed_at < cutoff
    ]
    signatures: list[dict[str, Any]] = []
    for cqa_limits in limits_by_key.values():
        for limit in cqa_limits:
            signatures += _signature_dict(
                limit.approval_signature, limit, f"Reference limits: {limit.name}"
            )
    for check in reviewed:
        signatures += _signature_dict(
            check.review_signature, check, f"Annual comparability check at {check.site.code}"
        )
    return {
        "period": {"start": _utc(start), "end": _utc(cutoff)},
        "cqas": cqas,
        "without_limits": without_limits,
        "sites": [s.code for s in sites],
        "checks_reviewed": [_check_dict(c, scope.cutoff_date) for c in reviewed],
        "checks_due": [
            _check_dict(c, scope.cutoff_date) for c in checks if scope.start <= c.due_on < scope.end
        ],
        "signatures": signatures,
    }


_TAG = re.compile(r"<[A-Za-z][^<>]*?/?>")
_STYLE_ATTRIBUTE = re.compile(r'\sstyle="([^"]*)"')
_STYLE_ELEMENT = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL)
_RULE = re.compile(r"\{([^}]*)\}")


def _declarations(css: str) -> list[tuple[str, str]]:
    pairs = []
    for declaration in css.split(";"):
        name, _, value = declaration.partition(":")
        if name.strip() and value.strip():
            pairs.append((name.strip(), value.strip()))
    return pairs


def _presentation(tag: str, pairs: list[tuple[str, str]]) -> str:
    present = set(re.findall(r"\s([A-Za-z:-]+)=", tag))
    attributes = "".join(
        f' {name}="{html.escape(value, quote=True)}"'
        for name, value in pairs
        if name not in present and re.fullmatch(r"[a-z-]+", name)
    )
    end = -2 if tag.endswith("/>") else -1
    return tag[:end] + attributes + tag[end:]


def svg_for_pdf(svg: str) -> str:
    """The same drawing with its CSS turned into SVG presentation attributes. Inline in HTML,
    WeasyPrint reads a `style` attribute (and a `<style>` element) of an SVG element with its
    HTML stylesheet parser, which logs every `fill` or `stroke` as an unknown property; the
    attributes draw identically and keep the worker's log clean."""
    inherited: list[tuple[str, str]] = []
    for block in _STYLE_ELEMENT.findall(svg):
        for rules in _RULE.findall(block):
            inherited += _declarations(rules)
    svg = _STYLE_ELEMENT.sub("", svg)

    def rewrite(match: re.Match[str]) -> str:
        tag = match.group(0)
        style = _STYLE_ATTRIBUTE.search(tag)
        pairs = _declarations(html.unescape(style.group(1))) if style else []
        if style:
            tag = tag[: style.start()] + tag[style.end() :]
        if tag.startswith("<svg"):
            pairs += inherited  # the <style> element's rules apply to every element
        return _presentation(tag, pairs) if pairs else tag

    return _TAG.sub(rewrite, svg)


def _points(raw: list[Any]) -> list[Any]:
    from batches.charts import ChartPoint  # matplotlib: loaded only by whoever draws

    return [
        ChartPoint(
            label=label, when=dt.datetime.fromisoformat(when), value=value, rules=tuple(rules)
        )
        for label, when, value, rules in raw
    ]


def _thinned(points: list[Any], most: int) -> list[Any]:
    """At most `most` of `points`, evenly spaced, the first and the last kept."""
    if len(points) <= most:
        return points
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


def _chart_budget(cqas: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Which (CQA, site) charts the document draws, at most CHARTS_MAX: every flagged site
    first (not shown, a rule broken, a signal), then each CQA's reference site, then the
    others by code. Each chart costs the PDF layout seconds and tens of megabytes; with 200
    sites the rest are left to the comparability page, and the document says which."""
    flagged, references, others = [], [], []
    for cqa in cqas:
        rows = {r["code"]: r for r in cqa["rows"]}
        for series in cqa["series"]:
            if not series["points"]:
                continue
            row = rows.get(series["code"], {})
            key = (cqa["key"], series["code"])
            if series["reference"]:
                references.append(key)
            elif (
                row.get("verdict") == Verdict.NOT_SHOWN
                or row.get("rule_breaks")
                or row.get("signals")
            ):
                flagged.append(key)
            else:
                others.append(key)
    return set((flagged + references + others)[:CHARTS_MAX])


def draw_comparability(data: dict[str, Any]) -> dict[str, Any]:
    """Draw each CQA's control chart per site (the reference site's results in grey behind a
    spoke's, thinned to REFERENCE_POINTS_MAX), replacing the raw series by the charts; at most
    CHARTS_MAX charts, flagged sites first (`_chart_budget`). No database access."""
    from batches.charts import control_chart_svg

    budget = _chart_budget(data["cqas"])
    cqas = []
    for cqa in data["cqas"]:
        limit = cqa["limit"]
        reference = next((s for s in cqa["series"] if s["reference"]), None)
        reference_points = _points(reference["points"]) if reference else []
        background = _thinned(reference_points, REFERENCE_POINTS_MAX)
        unit = cqa["unit"] or ""
        charts = []
        no_results, not_charted = [], []
        for series in cqa["series"]:
            if not series["points"]:
                no_results.append(series["code"])
                continue
            if (cqa["key"], series["code"]) not in budget:
                not_charted.append(series["code"])
                continue
            points = _points(series["points"])
            title = f"{cqa['name']} at {series['code']}"
            charts.append(
                {
                    "code": series["code"],
                    "title": title,
                    "points": len(points),
                    "flagged": sum(1 for p in points if p.rules),
                    "reference_shown": 0 if series["reference"] else len(background),
                    "reference_total": 0 if series["reference"] else len(reference_points),
                    "svg": svg_for_pdf(
                        control_chart_svg(
                            points,
                            centre=limit["centre"],
                            lower=limit["lower"],
                            upper=limit["upper"],
                            title=title,
                            unit=unit,
                            reference=() if series["reference"] else background,
                        )
                    ),
                }
            )
        drawn = {k: v for k, v in cqa.items() if k != "series"}
        drawn["charts_svg"] = charts
        drawn["no_results"] = no_results
        drawn["not_charted"] = not_charted
        cqas.append(drawn)
    return {**data, "cqas": cqas, "charts_max": CHARTS_MAX}


BATCHES = ReportSection(
    name=BATCHES_SECTION,
    title="Batches per site",
    order=30,
    collect=collect_batches,
    template="pdf/partials/report_batches.html",
    description="Batches made, certified and rejected at each site in the period, and the "
    "certification rate (BR-02, BR-04, RP-01).",
)
COMPARABILITY = ReportSection(
    name=COMPARABILITY_SECTION,
    title="Comparability across sites",
    order=50,
    collect=collect_comparability,
    template="pdf/partials/report_comparability.html",
    annex=True,
    draw=draw_comparability,
    description="Each site's critical quality attributes against the reference site: limits, "
    "statistics with 90 % confidence intervals, verdicts, control charts and the annual "
    "comparability checks (SO-08, SO-09).",
)


def register_report_sections() -> None:
    """Called from `BatchesConfig.ready()`."""
    reports.register(BATCHES)
    reports.register(COMPARABILITY)
