"""`user_is_qualified` and the places that ask it: a step sign-off, the release gate and QP
certification (TR-02, TR-04, TR-07; 21 CFR 11.10(i))."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from batches import services as batch_services
from batches.gates import SIGNER_NOT_QUALIFIED, signers_qualified
from batches.models import StepRecord
from controlsite.errors import ApplicationError
from controlsite.gates import Severity
from controlsite.signatures.models import ElectronicSignature
from tests.batches.helpers import Plant, do_steps, make_plant, passing_results, start
from tests.masterfile.helpers import signing
from tests.training.helpers import curriculum, issue, item, make_procedure
from training import selectors, services
from training.choices import CellState
from training.selectors import user_is_qualified

pytestmark = pytest.mark.django_db


@pytest.fixture
def plant() -> Plant:
    return make_plant()


def _refused(call: Any, status: int, code: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call()
    assert (caught.value.status_code, caught.value.code) == (status, code), caught.value.message
    return caught.value


def _enter(plant: Plant, user: Any, code: str, days_ago: int, version: Any = None) -> Any:
    return services.record_enter(
        actor=make_trainer(),
        trainee=user,
        item=item(code),
        version=version,
        completed_on=timezone.localdate() - dt.timedelta(days=days_ago),
        notes="paper record",
        credentials=signing(make_trainer()),
    )


def make_trainer() -> Any:
    from controlsite.accounts.models import User
    from tests.personas import make_persona

    return User.objects.filter(username="trainer").first() or make_persona("trainer")


#
# The verdicts at given moments
#


def test_the_refresher_qualifies_from_completion_until_expiry(plant):
    """TR-04: an expired refresher removes the qualification."""
    curriculum(make_trainer(), "site_operator", plant.reference, item("GXP-REF"))
    record = services.acknowledge(
        actor=plant.operator, item=item("GXP-REF"), credentials=signing(plant.operator)
    )
    done, expires = record.completed_at, record.expires_at
    assert expires is not None
    assert expires == selectors.add_months(done, 12)
    before = user_is_qualified(
        plant.operator, plant.reference, "site_operator", at=done - dt.timedelta(microseconds=1)
    )
    assert not before
    assert [(g.item.code, g.state, g.detail) for g in before.gaps] == [
        ("GXP-REF", CellState.MISSING, "never completed")
    ]
    assert user_is_qualified(plant.operator, plant.reference, "site_operator", at=done)
    assert user_is_qualified(plant.operator, plant.reference, "site_operator")
    lapsed = user_is_qualified(
        plant.operator, plant.reference, "site_operator", at=expires + dt.timedelta(seconds=1)
    )
    assert [(g.item.code, g.state) for g in lapsed.gaps] == [("GXP-REF", CellState.OVERDUE)]
    assert lapsed.gaps[0].detail.startswith("expired ")
    assert "GXP-REF Annual GxP refresher (expired" in lapsed.message()
    # Another site with no curriculum of its own asks only for accountability.
    assert user_is_qualified(
        plant.operator, plant.spoke, "site_operator", at=expires + dt.timedelta(days=1)
    )


def test_an_sop_qualifies_on_the_version_in_force_at_the_moment(plant):
    qa = plant.qa
    procedure = make_procedure(qa)
    v1 = issue(qa, procedure)
    curriculum(make_trainer(), "site_operator", None, procedure.training_item)
    services.acknowledge(
        actor=plant.operator,
        item=procedure.training_item,
        version=v1,
        credentials=signing(plant.operator),
    )
    v2 = issue(qa, procedure, summary="v2")
    v2.refresh_from_db()
    assert v2.effective_at is not None
    at_v1 = v2.effective_at - dt.timedelta(seconds=1)
    assert user_is_qualified(plant.operator, plant.spoke, "site_operator", at=at_v1)
    now = user_is_qualified(plant.operator, plant.spoke, "site_operator")
    assert [(g.item.code, g.detail) for g in now.gaps] == [("SOP-MFG-001", "read v1; v2 in force")]
    services.acknowledge(
        actor=plant.operator,
        item=procedure.training_item,
        version=v2,
        credentials=signing(plant.operator),
    )
    assert user_is_qualified(plant.operator, plant.spoke, "site_operator")


def test_a_requirement_counts_from_when_it_was_added(plant):
    trainer = make_trainer()
    made = curriculum(trainer, "site_operator", plant.reference)
    before = timezone.now()
    services.requirement_add(actor=trainer, curriculum=made, item=item("GXP-IND"), reason="new")
    assert user_is_qualified(plant.operator, plant.reference, "site_operator", at=before)
    assert not user_is_qualified(plant.operator, plant.reference, "site_operator")
    requirement = made.requirements.get()
    services.requirement_remove(actor=trainer, requirement=requirement, reason="dropped")
    assert user_is_qualified(plant.operator, plant.reference, "site_operator")
    requirement.refresh_from_db()
    assert requirement.removed_at is not None
    between = requirement.removed_at - dt.timedelta(microseconds=1)
    assert not user_is_qualified(plant.operator, plant.reference, "site_operator", at=between)


def test_the_accountability_item_is_always_required(plant):
    from tests.personas import make_persona

    fresh = make_persona("operator", username="fresh", accountable=False)
    verdict = user_is_qualified(fresh, plant.reference, "site_operator")
    assert [g.item.code for g in verdict.gaps] == ["DI-ESIG"]


#
# A step sign-off (TR-02)
#


def test_a_lapsed_operator_cannot_sign_a_step_and_is_told_what_is_missing(plant):
    curriculum(make_trainer(), "site_operator", None, item("GXP-REF"), item("GXP-IND"))
    _enter(plant, plant.operator, "GXP-REF", days_ago=400)
    batch = start(plant)
    signatures = ElectronicSignature.objects.count()
    refused = _refused(
        lambda: batch_services.step_record(
            actor=plant.operator,
            batch=batch,
            position=1,
            values={"bath-temp": 37, "volume": 50},
            credentials=signing(plant.operator),
        ),
        403,
        "not_qualified",
    )
    assert "GXP-IND GxP induction (never completed" in refused.message
    assert "GXP-REF Annual GxP refresher (expired" in refused.message
    assert [line.split(" (")[0] for line in refused.extra["missing"]] == [
        "GXP-IND GxP induction",
        "GXP-REF Annual GxP refresher",
    ]
    assert not StepRecord.objects.exists()
    assert ElectronicSignature.objects.count() == signatures


def test_a_qualified_batch_passes_the_signer_gate(plant):
    curriculum(make_trainer(), "site_operator", None, item("GXP-IND"))
    for user in (plant.operator, plant.operator2):
        _enter(plant, user, "GXP-IND", days_ago=30)
    batch = do_steps(plant, start(plant))
    assert signers_qualified(batch) == []


def test_the_gate_flags_a_batch_signed_by_someone_not_qualified_then(plant, monkeypatch):
    """A step signed while the person lacked an item (as if recorded before the check was in
    place) blocks certification, naming the step, the person and the item."""
    batch = start(plant)
    curriculum(make_trainer(), "site_operator", None, item("GXP-IND"))
    _enter(plant, plant.operator2, "GXP-IND", days_ago=30)
    monkeypatch.setattr(
        batch_services,
        "user_is_qualified",
        lambda *a, **k: selectors.Qualification(None, None, "", timezone.now(), ()),
    )
    batch = do_steps(plant, batch)
    monkeypatch.undo()
    passing_results(plant, batch)
    # The operator takes the induction afterwards: too late for what they signed.
    services.acknowledge(
        actor=plant.operator, item=item("GXP-IND"), credentials=signing(plant.operator)
    )
    assert user_is_qualified(plant.operator, plant.reference, "site_operator")
    findings = signers_qualified(batch)
    assert [(f.code, f.severity) for f in findings] == [
        (SIGNER_NOT_QUALIFIED, Severity.BLOCK),
        (SIGNER_NOT_QUALIFIED, Severity.BLOCK),
    ]
    assert findings[0].message.startswith(
        "Step 1 was performed by Omar Okafor, who was not qualified"
    )
    assert "GXP-IND" in findings[0].message
    batch.refresh_from_db()
    refused = _refused(
        lambda: batch_services.batch_certify(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="release"
        ),
        409,
        "gates_blocking",
    )
    assert SIGNER_NOT_QUALIFIED in str(refused.extra)


def test_the_gate_asks_a_fixed_number_of_queries(plant, django_assert_max_num_queries):
    curriculum(make_trainer(), "site_operator", None, item("GXP-IND"))
    for user in (plant.operator, plant.operator2):
        _enter(plant, user, "GXP-IND", days_ago=30)
    batch = do_steps(plant, start(plant))
    with django_assert_max_num_queries(8):
        assert signers_qualified(batch) == []


def test_a_qp_not_qualified_cannot_certify(plant):
    curriculum(make_trainer(), "qp", None, item("GXP-REF"))
    batch = do_steps(plant, start(plant))
    passing_results(plant, batch)
    batch.refresh_from_db()
    refused = _refused(
        lambda: batch_services.batch_certify(
            actor=plant.qp, batch=batch, credentials=signing(plant.qp), reason="release"
        ),
        403,
        "not_qualified",
    )
    assert "GXP-REF" in refused.message
