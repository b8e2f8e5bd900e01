"""The training matrix (TR-05, TR-06): everyone working at a site against every item any of
them needs there, each cell current / due soon / overdue / missing, the site's compliance, and
the same as CSV. QA, trainers, QPs and inspectors read every site's; a site lead their own
sites'; for anyone else a site's matrix does not exist (404). Every page here runs a fixed
number of queries however many people and items there are (design §8)."""

from __future__ import annotations

import csv
import datetime as dt
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from controlsite.accounts.roles import Role
from sites.choices import SiteStatus
from sites.models import Site
from sites.selectors import sites_visible_to
from training import selectors
from training.choices import CELL_BADGE, CellState
from training.panels import compliance_colour, site_compliance_context
from training.selectors import Cell, Matrix


def _site_or_404(request: HttpRequest, code: str) -> Site:
    site = selectors.matrix_sites_visible_to(request.user).filter(code=code).first()
    if site is None:
        raise Http404("No such site")
    return site


@login_required
@require_GET
def matrix_index(request: HttpRequest) -> HttpResponse:
    """Each site whose matrix this person may read, with its compliance, lowest first."""
    sites = list(
        selectors.matrix_sites_visible_to(request.user)
        .exclude(status=SiteStatus.CEASED)
        .order_by("code")
    )
    figures = selectors.site_compliance([s.pk for s in sites])
    sites.sort(key=lambda s: (figures[s.pk].pct, s.code))
    rows = [
        {
            "site": site,
            "compliance": figures[site.pk],
            "colour": compliance_colour(figures[site.pk].pct),
        }
        for site in sites
    ]
    return render(request, "training/matrix_index.html", {"tab": "matrix", "rows": rows})


def _day(moment: dt.datetime | dt.date | None) -> dt.date | None:
    if moment is None:
        return None
    if isinstance(moment, dt.datetime):
        return timezone.localtime(moment).date()
    return moment


def cell_date(cell: Cell) -> dt.date | None:
    """The one date that explains a cell: when a current item was completed, when a due-soon
    one expires or is due, when an overdue one expired or was due, when a missing one is due."""
    record, assignment = cell.record, cell.assignment
    if cell.state == CellState.CURRENT and record is not None:
        return _day(record.completed_at)
    if cell.state == CellState.DUE_SOON:
        if record is not None and record.expires_at is not None:
            return _day(record.expires_at)
        return _day(assignment.due_on) if assignment is not None else None
    if cell.state == CellState.OVERDUE:
        if assignment is not None:
            return _day(assignment.due_on)
        return _day(record.expires_at) if record is not None else None
    if cell.state == CellState.MISSING and assignment is not None:
        return _day(assignment.due_on)
    return None


def _safe(value: str) -> str:
    """A cell a spreadsheet would run as a formula is quoted (CSV injection)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv(matrix: Matrix) -> HttpResponse:
    """One row per person, one column per item; each cell the state and its date (ISO)."""
    stamp = timezone.localtime(matrix.at)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="training-matrix-{matrix.site.code}-{stamp:%Y%m%d-%H%M}.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(
        ["Person", "Username", "Roles", *(item.code for item in matrix.items), "Held", "Required"]
    )
    labels = dict(CellState.choices)
    for row in matrix.rows:
        cells = []
        for cell in row.cells:
            if cell.state == CellState.NOT_REQUIRED:
                cells.append("")
                continue
            day = cell_date(cell)
            label = str(labels[cell.state])
            cells.append(f"{label} {day.isoformat()}" if day is not None else label)
        writer.writerow(
            [
                _safe(row.user.printed_name),
                _safe(row.user.get_username()),
                " ".join(row.roles),
                *cells,
                row.held,
                row.required,
            ]
        )
    return response


_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _cells_html(cells: tuple[Cell, ...], labels: dict[str, Any], record_url: str) -> SafeString:
    """One row's cells as HTML, built here rather than in the template: a site of 500 people
    and 50 items has 25,000 cells, and template tags per cell would dominate the page's time.
    Everything that comes from data is escaped; the rest is fixed markup."""
    parts = []
    for cell in cells:
        code = escape(cell.item.code)
        if cell.state == CellState.NOT_REQUIRED:
            parts.append(
                f'<td class="matrix-cell cell-none" data-state="not_required" '
                f'title="{code}: not required"><span class="visually-hidden">Not required</span>'
                f'<span aria-hidden="true">·</span></td>'
            )
            continue
        label = escape(labels[cell.state])
        detail = f" — {escape(cell.detail)}" if cell.detail else ""
        text = (
            f'<a href="{record_url}{int(cell.record.pk)}/">{label}</a>'
            if cell.record is not None
            else label
        )
        day = cell_date(cell)
        when = (
            f'<span class="matrix-date"><time datetime="{day.isoformat()}">'
            f"{day.day} {_MONTHS[day.month]} {day.year}</time></span>"
            if day is not None
            else ""
        )
        parts.append(
            f'<td class="matrix-cell cell-{CELL_BADGE[cell.state] or "none"}" '
            f'data-state="{cell.state}" title="{code}: {label}{detail}">{text}{when}</td>'
        )
    return mark_safe("".join(parts))  # noqa: S308  (data is escaped above)


@login_required
@require_GET
def site_matrix(request: HttpRequest, code: str) -> HttpResponse:
    site = _site_or_404(request, code)
    matrix = selectors.site_matrix(site)
    if request.GET.get("format") == "csv":
        return _csv(matrix)
    counts = matrix.counts()
    labels = dict(CellState.choices)
    legend = [
        {"state": state, "label": labels[state], "badge": CELL_BADGE[state], "count": counts[state]}
        for state in (CellState.CURRENT, CellState.DUE_SOON, CellState.OVERDUE, CellState.MISSING)
    ]
    record_url = escape(reverse("training:record-detail", args=[0])[: -len("0/")])
    rows: list[dict[str, Any]] = [
        {
            "row": row,
            "cells": _cells_html(row.cells, labels, record_url),
            "roles": [Role(r).label for r in row.roles if r in Role.values],
        }
        for row in matrix.rows
    ]
    return render(
        request,
        "training/matrix.html",
        {
            "tab": "matrix",
            "site": site,
            "matrix": matrix,
            "rows": rows,
            "legend": legend,
            "colour": compliance_colour(matrix.compliance),
        },
    )


@login_required
@require_GET
def site_compliance(request: HttpRequest, code: str) -> HttpResponse:
    """A site's training compliance, for anyone who may see the site or its matrix: the
    fragment the site page loads into its training panel (htmx), or a page of its own without
    JavaScript."""
    user = request.user
    site = Site.objects.filter(
        Q(pk__in=sites_visible_to(user).values("pk"))
        | Q(pk__in=selectors.matrix_sites_visible_to(user).values("pk")),
        code=code,
    ).first()
    if site is None:
        raise Http404("No such site")
    ctx = site_compliance_context(request, site)
    htmx = getattr(request, "htmx", None)
    if htmx is not None and bool(htmx) and not htmx.boosted:
        return render(request, "training/panels/_site_figure.html", {"ctx": ctx})
    return render(request, "training/site_compliance.html", {"tab": "matrix", "ctx": ctx})
