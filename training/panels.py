"""The training app's panels: the home dashboard (each person's to-do list, each site's training
compliance) and the site page (TR-06).

Each panel's work is fixed whatever the number of sites, people or records: the to-do list is
one query, and every compliance figure comes from `site_compliance`, which reads all the sites
it is asked about in the same handful of queries (design §8).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from controlsite import dashboard
from sites.choices import SiteStatus
from sites.models import Site
from training import selectors

TODO_SHOWN = 6
SITES_SHOWN = 8
# A site's compliance colour: held by nearly everyone (ok), slipping (warn), failing (block).
COMPLIANCE_OK = 95
COMPLIANCE_WARN = 80


def compliance_colour(pct: int) -> str:
    """The badge colour of a compliance percentage (the badge colours of the shell)."""
    if pct >= COMPLIANCE_OK:
        return "ok"
    if pct >= COMPLIANCE_WARN:
        return "warn"
    return "block"


def my_training_panel(request: HttpRequest) -> dict[str, Any] | None:
    """ "Your training": the person's open assignments, soonest due first, overdue in red.
    Hidden from anyone with nothing open."""
    user = request.user
    if not user.is_authenticated:
        return None
    todo = selectors.todo_for(user)
    if not todo:
        return None
    today = timezone.localdate()
    return {
        "rows": [
            {"assignment": a, "overdue": a.due_on < today, "days": (a.due_on - today).days}
            for a in todo[:TODO_SHOWN]
        ],
        "total": len(todo),
        "more": max(len(todo) - TODO_SHOWN, 0),
        "overdue": sum(1 for a in todo if a.due_on < today),
    }


def compliance_panel(request: HttpRequest) -> dict[str, Any] | None:
    """ "Training compliance", for those who see all training (QA, QP, trainer, inspector):
    every visible site that has not ceased, lowest compliance first (TR-06)."""
    user = request.user
    if not user.is_authenticated or not selectors.sees_all_training(user):
        return None
    sites = list(
        selectors.matrix_sites_visible_to(user).exclude(status=SiteStatus.CEASED).order_by("code")
    )
    if not sites:
        return None
    figures = selectors.site_compliance([s.pk for s in sites])
    sites.sort(key=lambda s: (figures[s.pk].pct, s.code))
    rows = [
        {"site": s, "c": figures[s.pk], "colour": compliance_colour(figures[s.pk].pct)}
        for s in sites
    ]
    held = sum(f.held for f in figures.values())
    required = sum(f.required for f in figures.values())
    network = selectors.compliance_pct(held, required)
    return {
        "rows": rows[:SITES_SHOWN],
        "more": max(len(rows) - SITES_SHOWN, 0),
        "network": network,
        "network_colour": compliance_colour(network),
        "overdue": sum(f.overdue for f in figures.values()),
        "sites": len(rows),
    }


def site_compliance_panel(request: HttpRequest, site: Site) -> dict[str, Any] | None:
    """The site page's training panel. It runs no query: the page loads the figure from
    `training:site-compliance` once shown (htmx), so the site page keeps its own fixed query
    count however many people work at the site (design §8); without JavaScript the panel is a
    link to the same figure."""
    if not request.user.is_authenticated:
        return None
    return {"site": site, "url": reverse("training:site-compliance", args=[site.code])}


def site_compliance_context(request: HttpRequest, site: Site) -> dict[str, Any]:
    """The site's training compliance, with a link to the matrix for those who may read it
    (TR-06)."""
    figure = selectors.site_compliance([site.pk])[site.pk]
    return {
        "site": site,
        "c": figure,
        "colour": compliance_colour(figure.pct),
        "may_open": selectors.matrix_sites_visible_to(request.user).filter(pk=site.pk).exists(),
    }


def register_panels() -> None:
    """Called from `TrainingConfig.ready()`."""
    dashboard.register(
        dashboard.Panel(
            "training-mine",
            "Your training",
            "training/panels/_mine.html",
            my_training_panel,
            3,
        )
    )
    dashboard.register(
        dashboard.Panel(
            "training-compliance",
            "Training compliance",
            "training/panels/_compliance.html",
            compliance_panel,
            30,
        )
    )
    dashboard.register_site_panel(
        dashboard.SitePanel(
            "training",
            "Training",
            "training/panels/_site.html",
            site_compliance_panel,
            10,
        )
    )
