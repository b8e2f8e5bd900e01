"""The deviations demo data (issue 6 §8, design §9): the batch signals turned into deviations,
deviations in every state with some overdue, CAPAs open, closed and cancelled, all made through
the services by the people whose roles do each step; a second run creates nothing (DV-01…DV-05,
ES-01)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from batches.choices import SignalKind
from batches.models import BatchSignal
from controlsite.accounts.models import User
from controlsite.signatures.services import signature_is_valid
from deviations import demo as demo_data
from deviations.choices import CapaStatus, DeviationSource, DeviationStatus
from deviations.demo import DEVIATIONS
from deviations.models import Capa, ChangeControl, Complaint, Deviation, DeviationExtension
from deviations.selectors import deviation_trends
from tests.batches import test_demo as batches_demo
from tests.batches.test_demo import counts, run

# The batches demo test's fixtures: `demo_setup` once for the module, each test in a savepoint.
_demo_once = batches_demo._demo_once
demo_output = batches_demo.demo_output


def test_every_batch_signal_became_one_deviation(demo_output):
    assert not BatchSignal.objects.filter(processed_at__isnull=True).exists()
    assert Deviation.objects.filter(source=DeviationSource.SIGNAL).count() == (
        BatchSignal.objects.count()
    )
    late = Deviation.objects.get(signal__kind=SignalKind.LATE_RESULT_FAILED)
    assert late.proposed_class == "critical"


def test_deviations_are_in_every_state_and_some_are_overdue(demo_output):
    today = timezone.localdate()
    stories = Deviation.objects.filter(title__in=[s.title for s in DEVIATIONS])
    assert stories.count() == len(DEVIATIONS)
    assert {d.status for d in stories} == set(DeviationStatus.values)
    overdue = [d for d in Deviation.objects.all() if d.is_overdue(today)]
    assert len(overdue) >= 2
    assert all(d.escalated_at is not None for d in overdue)
    closed = Deviation.objects.get(status=DeviationStatus.CLOSED)
    assert closed.closure_signature.signer_username == "qa"
    assert signature_is_valid(closed.closure_signature, closed)
    assert closed.root_cause_category == "human_error" and closed.human_error_justification
    assert DeviationExtension.objects.filter(status="requested").count() == 1
    assert {c.status for c in Capa.objects.all()} >= {
        CapaStatus.OPEN,
        CapaStatus.CLOSED,
        CapaStatus.CANCELLED,
    }
    assert Capa.objects.filter(source="audit").exists()


def test_complaints_show_the_adr_clock_and_who_reported_it(demo_output):
    """RP-05: a serious suspected ADR has its 15-day clock; one is reported, by QA, on time."""
    serious = Complaint.objects.filter(kind="adverse_reaction", serious=True)
    assert serious.count() == 2
    assert all(c.report_due_on is not None for c in serious)
    reported = serious.get(reported_on__isnull=False)
    assert reported.reported_by.username == "qa" and reported.report_reference
    assert reported.batch is not None and reported.batch.coi_reference == "DEMO-CD19-1004"
    running = serious.get(reported_on__isnull=True)
    assert running.report_due_on == timezone.localdate() + dt.timedelta(days=3)
    assert Complaint.objects.filter(status="closed").count() == 1


def test_changes_show_each_stage_and_the_master_file_change_opened_its_draft(demo_output):
    """DV-07…DV-09: the regulatory master-file change, signed by QA and a QP, opened one draft;
    the site change awaits its QP; the equipment change is closed with its review."""
    changes = {c.title: c for c in ChangeControl.objects.all()}
    mf = changes[demo_data.MF_CHANGE]
    assert mf.regulatory and mf.status == "approved"
    assert mf.qa_signature is not None and mf.qp_signature is not None
    assert mf.master_file_draft is not None and mf.master_file_draft.status == "draft"
    site = changes[demo_data.SITE_CHANGE]
    assert (site.status, site.qp_signature) == ("in_review", None)
    assert changes[demo_data.EQUIPMENT_CHANGE].status == "closed"
    assert changes[demo_data.PROCEDURE_CHANGE].status == "draft"


def test_the_trend_page_has_something_to_show(demo_output):
    trends = deviation_trends(user=User.objects.get(username="qa"), months=12)
    assert sum(m.total for m in trends.months) == Deviation.objects.count()
    assert len([s for s in trends.sites if s.deviations]) >= 5
    assert {key for key, _label, count in trends.causes if count} >= {"equipment", "human_error"}


def test_a_second_run_creates_nothing(demo_output):
    before = counts()
    deviations = Deviation.objects.count()
    run()
    assert counts() == before
    assert Deviation.objects.count() == deviations
