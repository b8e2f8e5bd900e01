"""The training app's column on the oversight dashboard (SO-07, TR-06): each site's training
compliance, the share of the items its people need that they hold, with how many are overdue.

Evaluating every person's training at 200 sites takes seconds (`selectors.site_compliance`:
1.9 s for 200 sites of 8 people against 20 items in `tests/bench/oversight.py`), too slow for a
page that refreshes itself every minute. So the column reads stored figures
(`SiteComplianceSnapshot`, one query) and recomputes only those missing or older than
SNAPSHOT_MAX_AGE, all together, before it answers; `compliance_snapshots_refresh()` recomputes
every site's, for the hourly round.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from django.utils import timezone

from controlsite import dashboard
from controlsite.dashboard import Cell
from sites.choices import SiteStatus
from sites.models import Site
from training import selectors
from training.models import SiteComplianceSnapshot
from training.panels import compliance_colour

# The oldest figure the dashboard shows without recomputing it first (the hourly round keeps
# them younger than this).
SNAPSHOT_MAX_AGE = dt.timedelta(hours=1)


def compliance_snapshots_refresh(site_ids: Iterable[int] | None = None) -> int:
    """Recompute and store the training compliance of these sites (every site not ceased when
    None) from the records, in `site_compliance`'s fixed number of queries and one upsert.
    Derived figures, not GMP records: no history, no audit event. Idempotent; returns how many
    sites were refreshed."""
    if site_ids is None:
        ids = list(Site.objects.exclude(status=SiteStatus.CEASED).values_list("pk", flat=True))
    else:
        ids = list(site_ids)
    if not ids:
        return 0
    computed_at = timezone.now()
    figures = selectors.site_compliance(ids)
    SiteComplianceSnapshot.objects.bulk_create(
        [
            SiteComplianceSnapshot(
                site_id=site_id,
                held=figure.held,
                required=figure.required,
                overdue=figure.overdue,
                computed_at=computed_at,
            )
            for site_id, figure in figures.items()
        ],
        update_conflicts=True,
        unique_fields=["site"],
        update_fields=["held", "required", "overdue", "computed_at"],
    )
    return len(ids)


def compliance_figures(site_ids: Sequence[int]) -> dict[int, selectors.Compliance]:
    """Each site's compliance as stored, after recomputing those missing or older than
    SNAPSHOT_MAX_AGE: one query when every figure is fresh."""

    def read(ids: Sequence[int]) -> dict[int, selectors.Compliance]:
        rows = SiteComplianceSnapshot.objects.filter(site_id__in=ids).values_list(
            "site_id", "held", "required", "overdue", "computed_at"
        )
        return {
            site_id: selectors.Compliance(held, required, overdue)
            for site_id, held, required, overdue, at in rows
            if at >= timezone.now() - SNAPSHOT_MAX_AGE
        }

    figures = read(site_ids)
    stale = [site_id for site_id in site_ids if site_id not in figures]
    if stale:
        compliance_snapshots_refresh(stale)
        figures.update(read(stale))
    return figures


def training_cells(site_ids: Sequence[int], now: dt.datetime) -> dict[int, Cell]:
    """Training compliance per site, as a bar in the compliance colours (TR-06)."""
    figures = compliance_figures(site_ids)
    codes = dict(Site.objects.filter(pk__in=site_ids).values_list("pk", "code"))
    link = dashboard.link_maker("training:site-compliance")
    cells = {}
    for site_id, figure in figures.items():
        if not figure.required:
            # Nobody works there: nothing is held, and no full green bar says otherwise.
            cells[site_id] = Cell(text="nobody yet", sort_value=None)
            continue
        pct = figure.pct
        cells[site_id] = Cell(
            text=f"{pct} %",
            sort_value=pct,
            colour=compliance_colour(pct),
            bar=pct,
            link=link(codes[site_id]),
            detail=f"{figure.overdue} overdue" if figure.overdue else "",
        )
    return cells


def register_oversight() -> None:
    """Called from `TrainingConfig.ready()`."""
    dashboard.register_oversight_column(
        dashboard.OversightColumn(
            "training",
            "Training",
            70,
            training_cells,
            help="The share of the training items the site's people need that they hold "
            "(TR-06), with how many are overdue; recomputed at least hourly.",
        )
    )
