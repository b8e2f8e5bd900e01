"""Building procedures and curricula for training tests through the real services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from controlsite.accounts.models import User
from controlsite.signatures.models import ElectronicSignature
from sites.models import Site
from tests.masterfile.helpers import signing
from training import services
from training.models import Curriculum, Procedure, ProcedureVersion, TrainingItem


def sop_file(name: str = "sop.pdf", text: str = "procedure") -> SimpleUploadedFile:
    """A small file that passes the upload checks (a PDF's magic bytes and some text)."""
    return SimpleUploadedFile(name, b"%PDF-1.7\n% " + text.encode() + b"\n%%EOF\n")


def make_procedure(
    qa: User, number: str = "SOP-MFG-001", title: str = "Aseptic filling"
) -> Procedure:
    return services.procedure_create(actor=qa, number=number, title=title, reason="new SOP")


def issue(
    qa: User, procedure: Procedure, *, effective_on: dt.date | None = None, summary: str = "text"
) -> ProcedureVersion:
    return services.procedure_version_issue(
        actor=qa,
        procedure=procedure,
        effective_on=effective_on or timezone.localdate(),
        change_summary=summary,
        upload=sop_file(f"{procedure.number}.pdf", summary),
        credentials=signing(qa),
        reason="issued",
    )


def curriculum(
    actor: User, role: str, site: Site | None, *items: TrainingItem, title: str = ""
) -> Curriculum:
    made = services.curriculum_create(
        actor=actor, role=role, site=site, title=title or f"{role} curriculum", reason="set up"
    )
    for item in items:
        services.requirement_add(actor=actor, curriculum=made, item=item, reason="needed")
    return made


def item(code: str) -> TrainingItem:
    return TrainingItem.objects.get(code=code)


def signature_of(record: Any) -> ElectronicSignature:
    """The signature a training record or procedure version carries (it always has one)."""
    signature = getattr(record, "signature", None) or getattr(record, "approval_signature", None)
    assert isinstance(signature, ElectronicSignature)
    return signature
