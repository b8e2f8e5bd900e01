"""The deviations app's release gate (design §5; DV-05).

An open critical or major deviation on the batch, or an open OOS investigation of one of its
results, blocks certification; an open minor deviation warns (the QP justifies it in writing).
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from controlsite.gates import Finding, Severity
from deviations.choices import BLOCKING_CLASSES, DEVIATION_OPEN, OosOutcome
from deviations.models import Deviation, OosInvestigation

DEVIATION_OPEN_BLOCKING = "deviation_open"
DEVIATION_OPEN_MINOR = "minor_deviation_open"
OOS_OPEN = "oos_open"


def no_open_deviation(batch: Any) -> list[Finding]:
    findings: list[Finding] = []
    open_deviations = Deviation.objects.filter(batch=batch, status__in=DEVIATION_OPEN).only(
        "number", "title", "proposed_class", "confirmed_class", "status"
    )
    for deviation in open_deviations.order_by("number"):
        blocking = deviation.deviation_class in BLOCKING_CLASSES
        findings.append(
            Finding(
                code=DEVIATION_OPEN_BLOCKING if blocking else DEVIATION_OPEN_MINOR,
                severity=Severity.BLOCK if blocking else Severity.WARN,
                message=f"{deviation.get_status_display()} "
                f"{deviation.deviation_class} deviation {deviation.number}: {deviation.title}",
                link=reverse("deviations:detail", args=[deviation.number]),
            )
        )
    investigations = OosInvestigation.objects.filter(
        result__batch=batch, outcome=OosOutcome.OPEN
    ).select_related("result__specification")
    for oos in investigations.order_by("number"):
        findings.append(
            Finding(
                code=OOS_OPEN,
                severity=Severity.BLOCK,
                message=f"OOS investigation {oos.number} of {oos.result.specification.name} "
                "is open.",
                link=reverse("deviations:oos-detail", args=[oos.number]),
            )
        )
    return findings
