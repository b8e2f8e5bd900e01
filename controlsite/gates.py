"""The release-gate registry: release by exception (design §5).

Each app registers its gates in `AppConfig.ready()`:

    gates.register("sites.site_can_manufacture", site_gate)

A gate takes the batch being considered and returns findings. The QP's certification page shows
every finding at once; any `block` refuses certification, a `warn` needs a written justification.
The kernel never imports an app: it only calls what was registered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    BLOCK = "block"
    WARN = "warn"


@dataclasses.dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str
    link: str = ""
    gate: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "gate": self.gate,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "link": self.link,
        }


Gate = Callable[[Any], Iterable[Finding]]

_registry: dict[str, Gate] = {}


def register(name: str, gate: Gate) -> None:
    """Add a gate. Names are unique, `<app>.<what it checks>`; registering twice is a bug."""
    if name in _registry and _registry[name] is not gate:
        raise ValueError(f"A different release gate is already registered as {name!r}")
    _registry[name] = gate


def unregister(name: str) -> None:
    _registry.pop(name, None)


def registered() -> dict[str, Gate]:
    return dict(_registry)


@dataclasses.dataclass(frozen=True)
class GateReport:
    findings: tuple[Finding, ...]

    @property
    def blocks(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.BLOCK)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.WARN)

    @property
    def can_certify(self) -> bool:
        return not self.blocks

    def snapshot(self) -> list[dict[str, str]]:
        """What is stored with a certification."""
        return [f.as_dict() for f in self.findings]


def evaluate(subject: Any) -> GateReport:
    """Run every registered gate on `subject`; blocks first, then warnings, each in name order.

    A gate that raises is itself a blocking finding: a broken check must never let a batch out.
    """
    findings: list[Finding] = []
    for name in sorted(_registry):
        try:
            produced = list(_registry[name](subject))
        except Exception as exc:  # noqa: BLE001  (any failure of a gate must block, not crash)
            produced = [
                Finding(
                    code="gate_error",
                    severity=Severity.BLOCK,
                    message=f"The check {name} could not be evaluated: {exc}",
                )
            ]
        findings.extend(dataclasses.replace(f, gate=f.gate or name) for f in produced)
    findings.sort(key=lambda f: (f.severity is not Severity.BLOCK, f.gate, f.code))
    return GateReport(findings=tuple(findings))
