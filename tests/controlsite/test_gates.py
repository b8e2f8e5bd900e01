"""The release-gate registry (design §5)."""

from __future__ import annotations

import dataclasses

import pytest

from controlsite import gates
from controlsite.gates import Finding, Severity


@dataclasses.dataclass
class FakeBatch:
    expired: bool = False
    open_minor_deviations: int = 0


def not_expired(batch: FakeBatch) -> list[Finding]:
    if batch.expired:
        return [Finding("expired", Severity.BLOCK, "The batch has expired.", "/batches/1/")]
    return []


def minor_deviations(batch: FakeBatch) -> list[Finding]:
    return [
        Finding("open_minor_deviation", Severity.WARN, "An open minor deviation.", "/dev/1/")
    ] * batch.open_minor_deviations


@pytest.fixture
def registry():
    saved = gates.registered()
    for name in saved:
        gates.unregister(name)
    yield
    for name in gates.registered():
        gates.unregister(name)
    for name, gate in saved.items():
        gates.register(name, gate)


def test_a_registered_gate_is_evaluated_and_its_findings_reported(registry):
    gates.register("test.not_expired", not_expired)
    report = gates.evaluate(FakeBatch(expired=True))
    assert not report.can_certify
    (finding,) = report.blocks
    assert finding.code == "expired"
    assert finding.gate == "test.not_expired"
    assert finding.link == "/batches/1/"
    assert gates.evaluate(FakeBatch()).can_certify


def test_every_finding_is_shown_at_once_blocks_first(registry):
    gates.register("test.a_minor", minor_deviations)
    gates.register("test.z_expired", not_expired)
    report = gates.evaluate(FakeBatch(expired=True, open_minor_deviations=2))
    assert [f.severity for f in report.findings] == [Severity.BLOCK, Severity.WARN, Severity.WARN]
    assert len(report.warnings) == 2
    assert report.snapshot()[0] == {
        "gate": "test.z_expired",
        "code": "expired",
        "severity": "block",
        "message": "The batch has expired.",
        "link": "/batches/1/",
    }


def test_warnings_alone_do_not_block(registry):
    gates.register("test.minor", minor_deviations)
    report = gates.evaluate(FakeBatch(open_minor_deviations=1))
    assert report.can_certify
    assert report.warnings


def test_a_gate_that_fails_blocks_certification(registry):
    def broken(batch: FakeBatch) -> list[Finding]:
        raise RuntimeError("database unreachable")

    gates.register("test.broken", broken)
    report = gates.evaluate(FakeBatch())
    assert not report.can_certify
    assert "database unreachable" in report.blocks[0].message


def test_two_different_gates_cannot_share_a_name(registry):
    gates.register("test.same", not_expired)
    gates.register("test.same", not_expired)  # re-registering the same function is harmless
    with pytest.raises(ValueError, match="already registered"):
        gates.register("test.same", minor_deviations)
