"""Reads for batch templates and batches: visibility, progress, gate findings, the QP queue.

Visibility: Control Site QA, QPs and inspectors see every batch; anyone else (site staff, a
site-limited integrator token) sees the batches of the sites they may see (`sites_visible_to`),
and answers 404 for the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.db.models import (
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from batches.choices import (
    AWAITING_CERTIFICATION,
    STEP_ROLE_HOLDERS,
    SpecificationTiming,
    StepRole,
    TemplateStatus,
)
from batches.models import (
    Batch,
    BatchTemplate,
    Specification,
    StepRecord,
    TemplateStep,
    TestResult,
)
from controlsite import gates
from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from controlsite.accounts.scope import token_site_limit
from masterfile.choices import VersionStatus
from masterfile.models import MasterFileVersion, Product
from masterfile.selectors import products_visible_to, site_listed_exists
from sites.choices import MANUFACTURING
from sites.models import Site
from sites.selectors import sites_visible_to, user_roles_at_site


def batches_visible_to(user: Any) -> QuerySet[Batch]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Batch.objects.none()
    if permissions.user_can(user, Capability.VIEW_ALL_SITES) and token_site_limit(user) is None:
        return Batch.objects.all()
    return Batch.objects.filter(site__in=sites_visible_to(user))


def batch_get_for_user(*, user: Any, number: str) -> Batch:
    """The batch, if the user may see it; `Batch.DoesNotExist` otherwise (→ 404)."""
    return batches_visible_to(user).select_related("site", "product", "template").get(number=number)


def templates_visible_to(user: Any) -> QuerySet[BatchTemplate]:
    return BatchTemplate.objects.filter(product__in=products_visible_to(user)).select_related(
        "product", "master_file_version"
    )


def approved_template(product: Product) -> BatchTemplate | None:
    return BatchTemplate.objects.filter(product=product, status=TemplateStatus.APPROVED).first()


def holds_step_role(user: Any, site: Site, step: TemplateStep) -> bool:
    """The person records manufacture and holds, at this site, a role that may perform the
    step (BR-15). The one rule for services (which refuse) and pages (which offer the form)."""
    if not permissions.user_can(user, Capability.RECORD_MANUFACTURE):
        return False
    return bool(user_roles_at_site(user, site) & STEP_ROLE_HOLDERS[StepRole(step.role)])


def template_steps(template: BatchTemplate, *, parameters: bool = True) -> list[TemplateStep]:
    steps = template.steps.order_by("position")
    return list(steps.prefetch_related("parameters") if parameters else steps)


#
# Progress of one batch
#


@dataclasses.dataclass(frozen=True)
class StepRow:
    """A template step beside its record, if any, for the batch page and the gates."""

    step: TemplateStep
    record: StepRecord | None

    @property
    def done(self) -> bool:
        return self.record is not None and not self.record.awaiting_verification


@dataclasses.dataclass(frozen=True)
class Progress:
    rows: tuple[StepRow, ...]

    @property
    def done_count(self) -> int:
        return sum(1 for row in self.rows if row.done)

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def percent(self) -> int:
        return round(100 * self.done_count / self.total) if self.total else 100

    @property
    def complete(self) -> bool:
        return all(row.done for row in self.rows)

    @property
    def current(self) -> StepRow | None:
        """The row to act on next: a step awaiting verification, else the first not done."""
        return next((row for row in self.rows if not row.done), None)


def batch_progress(batch: Batch, *, parameters: bool = True) -> Progress:
    """The template's steps beside the batch's records; the gates need no `parameters`."""
    steps = template_steps(batch.template, parameters=parameters)
    records = {
        r.position: r
        for r in batch.step_records.select_related(
            "step", "performed_by", "verified_by", "performed_signature", "verified_signature"
        )
    }
    return Progress(rows=tuple(StepRow(step=s, record=records.get(s.position)) for s in steps))


@dataclasses.dataclass(frozen=True)
class ResultRow:
    specification: Specification
    result: TestResult | None


def batch_results(batch: Batch) -> list[ResultRow]:
    results = {r.specification_id: r for r in batch.results.all()}
    return [
        ResultRow(specification=spec, result=results.get(spec.pk))
        for spec in batch.template.specifications.order_by("key")
    ]


def pending_late_results(batch: Batch) -> list[Specification]:
    done = batch.results.values("specification_id")
    return list(
        batch.template.specifications.filter(timing=SpecificationTiming.LATE).exclude(pk__in=done)
    )


def batch_gate_report(batch: Batch) -> gates.GateReport:
    """Every registered release gate on this batch, now (design §5)."""
    return gates.evaluate(batch)


#
# The QP queue (issue 5 §6)
#


@dataclasses.dataclass(frozen=True)
class QueueFilters:
    site: str = ""
    product: str = ""


def qp_queue(*, user: Any, filters: QueueFilters) -> QuerySet[Batch]:
    """Batches awaiting certification, soonest to expire first. Indexed on (status, expiry)."""
    qs = batches_visible_to(user).filter(status=AWAITING_CERTIFICATION)
    if filters.site:
        qs = qs.filter(site__code=filters.site)
    if filters.product:
        qs = qs.filter(product__code=filters.product)
    return qs.select_related("site", "product").order_by("expires_at", "id")


@dataclasses.dataclass(frozen=True)
class GateSummary:
    """How many findings block and warn, counted in bulk from the batch record (see
    `queue_gate_summaries`)."""

    blocks: int
    warnings: int


def _count(qs: QuerySet[Any], group: str) -> Coalesce:
    return Coalesce(
        Subquery(
            qs.order_by().values(group).annotate(c=Count("pk")).values("c")[:1],
            output_field=IntegerField(),
        ),
        Value(0),
    )


def queue_gate_summaries(qs: QuerySet[Batch]) -> QuerySet[Batch]:
    """The queue's gate summary in ONE query, whatever the number of rows.

    Evaluating every registered gate costs about a dozen queries per batch, so the queue counts
    the same findings with SQL over the batch record instead: steps missing or unverified,
    values out of limits (warn), results due before release missing, registered specifications
    failed (block) and unregistered ones (warn), the template's approval, the site active, the
    master file effective with the site listed; expiry is compared at render time. It does not
    re-hash signatures nor run gates other apps may register: the certification page evaluates
    every gate (`selectors.batch_gate_report`) and the service does again when signing.
    """
    step_done = Q(step__requires_verification=False) | Q(verified_by__isnull=False)
    before = SpecificationTiming.BEFORE_RELEASE
    # Only the columns the queue shows and the summary reads: the rows are read every 2 s for
    # every QP watching, and wide rows (addresses, dossiers) would be parsed for nothing.
    shown = ["number", "status", "expires_at", "site__code", "site__status", "product__code"]
    shown += ["product__name", "template__status", "template__approved_at"]
    return (
        qs.select_related("site", "product", "template")
        .only(*shown)
        .annotate(
            g_steps=_count(TemplateStep.objects.filter(template=OuterRef("template")), "template"),
            g_steps_done=_count(
                StepRecord.objects.filter(step_done, batch=OuterRef("pk")), "batch"
            ),
            g_out_of_limit=_count(
                StepRecord.objects.filter(batch=OuterRef("pk")).exclude(out_of_limit=[]), "batch"
            ),
            g_results_missing=_count(
                Specification.objects.filter(template=OuterRef("template"), timing=before).exclude(
                    Exists(
                        TestResult.objects.filter(
                            batch=OuterRef(OuterRef("pk")), specification=OuterRef("pk")
                        )
                    )
                ),
                "template",
            ),
            g_failed_registered=_count(
                TestResult.objects.filter(
                    batch=OuterRef("pk"), passed=False, specification__registered=True
                ),
                "batch",
            ),
            g_failed_unregistered=_count(
                TestResult.objects.filter(
                    batch=OuterRef("pk"), passed=False, specification__registered=False
                ),
                "batch",
            ),
            g_mf_effective=Exists(
                MasterFileVersion.objects.filter(
                    master_file__product=OuterRef("product"), status=VersionStatus.EFFECTIVE
                )
            ),
            g_listed=site_listed_exists(
                product_ref=OuterRef("product_id"), site_ref=OuterRef("site_id")
            ),
        )
    )


def gate_summary(batch: Any, now: Any = None) -> GateSummary:
    """The counts for a batch annotated by `queue_gate_summaries`, mirroring the gates'
    rules (batches/gates.py, sites/gates.py, masterfile/gates.py)."""
    now = now or timezone.now()
    template = batch.template
    blocks = (
        max(batch.g_steps - batch.g_steps_done, 0)
        + batch.g_results_missing
        + batch.g_failed_registered
        + (0 if batch.site.status in MANUFACTURING else 1)
        + (0 if batch.g_mf_effective and batch.g_listed else 1)
        + (0 if template.approved_at is not None and template.status != "draft" else 1)
        + (1 if batch.expires_at is not None and batch.expires_at <= now else 0)
    )
    warnings = batch.g_out_of_limit + batch.g_failed_unregistered
    return GateSummary(blocks=blocks, warnings=warnings)


def time_left(batch: Batch, now: dt.datetime | None = None) -> dt.timedelta | None:
    if batch.expires_at is None:
        return None
    return batch.expires_at - (now or timezone.now())


def batch_dossier(batch: Batch) -> Batch:
    """The batch with everything its page and certificate show, in a fixed number of queries."""
    return (
        Batch.objects.select_related(
            "site", "product", "template", "master_file_version", "created_by"
        )
        .prefetch_related(
            Prefetch(
                "results",
                queryset=TestResult.objects.select_related("specification", "created_by"),
            )
        )
        .get(pk=batch.pk)
    )
