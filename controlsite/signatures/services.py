"""The one way to sign a record electronically (design §4; ES-01…ES-09).

A transition service that needs a signature does its work inside `signing_transaction()` and
calls `sign()` last, after the record holds its final content:

    with signing_transaction():
        version = MasterFileVersion.objects.select_for_update().get(pk=version.pk)
        ...change and save...
        sign(signer=user, credentials=credentials, record=version,
             meaning=SignatureMeaning.APPROVED, reason=reason)

If the credentials are wrong, `sign()` raises `SignatureRefusedError`, the whole transaction rolls
back, and `signing_transaction` then records the failed attempt, which counts toward lockout.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from controlsite import qualification
from controlsite.accounts import mfa, permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.accounts.services import account_is_locked, authentication_failure_register
from controlsite.audit.events import KernelEvent
from controlsite.audit.services import audit_event_record, record_label
from controlsite.errors import ApplicationError
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning

# Fields that change without changing what was signed.
_VOLATILE_FIELDS = frozenset({"updated_at"})


class SignatureRefusedError(ApplicationError):
    """The signature was not applied (HTTP 422). `code` says why."""

    status_code = 422
    default_code = "signature_refused"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        signer: User | None = None,
        counts_as_failure: bool = False,
        meaning: str = "",
        target: str = "",
    ) -> None:
        super().__init__(message, code=code)
        self.signer = signer
        self.counts_as_failure = counts_as_failure
        self.meaning = meaning
        self.target = target


@dataclasses.dataclass(frozen=True)
class SignatureCredentials:
    """What the signer re-enters. `continuous_session` is true only for a browser session in
    which this user has already signed once with every component (ES-06)."""

    password: str
    otp: str = ""
    username: str = ""
    continuous_session: bool = False


#
# Canonical content and validity (ES-02, ES-03)
#


def canonical_content(record: models.Model) -> dict[str, Any]:
    """The content a signature binds to: `record.signature_content()` if the model defines it,
    else every concrete field except bookkeeping timestamps."""
    custom = getattr(record, "signature_content", None)
    if callable(custom):
        content: dict[str, Any] = custom()
    else:
        content = {
            field.attname: _plain(getattr(record, field.attname))
            for field in record._meta.concrete_fields
            if field.name not in _VOLATILE_FIELDS
        }
    return {"record": record_label(record), "pk": str(record.pk), "content": content}


def _plain(value: Any) -> Any:
    # A stored file is identified by its name here; its bytes are bound by their own SHA-256.
    if isinstance(value, FieldFile):
        return value.name or ""
    return value


def content_hash(record: models.Model) -> str:
    payload = json.dumps(
        canonical_content(record), cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def signature_is_valid(signature: ElectronicSignature, record: models.Model | None = None) -> bool:
    """True while the record still has the content that was signed."""
    if record is None:
        record = signature_target(signature)
        if record is None:
            return False
    return content_hash(record) == signature.record_hash


def signature_target(signature: ElectronicSignature) -> models.Model | None:
    from django.apps import apps

    try:
        model = apps.get_model(signature.target_type)
    except (LookupError, ValueError):
        return None
    record: models.Model | None = model._default_manager.filter(pk=signature.target_id).first()
    return record


def signatures_for(record: models.Model) -> list[tuple[ElectronicSignature, bool]]:
    """Every signature on a record, oldest first, each with whether it is still valid."""
    current = content_hash(record)
    rows = ElectronicSignature.objects.filter(
        target_type=record_label(record), target_id=str(record.pk)
    ).order_by("signed_at", "id")
    return [(sig, sig.record_hash == current) for sig in rows]


#
# Signing
#

_in_signing_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "controlsite_signing_transaction", default=False
)


@contextmanager
def signing_transaction() -> Iterator[None]:
    """`transaction.atomic()` that records a refused signature after rolling back.

    The record of a failed attempt must survive the rollback of the change it tried to sign,
    so it is written once the block has unwound.
    """
    token = _in_signing_transaction.set(True)
    try:
        with transaction.atomic():
            yield
    except SignatureRefusedError as refused:
        _record_refusal(refused)
        raise
    finally:
        _in_signing_transaction.reset(token)


def _record_refusal(refused: SignatureRefusedError) -> None:
    extra = {"code": refused.code, "meaning": refused.meaning, "record": refused.target}
    if refused.counts_as_failure:
        authentication_failure_register(
            event_type=KernelEvent.SIGNATURE_AUTH_FAILED,
            username=refused.signer.get_username() if refused.signer else "",
            user=refused.signer,
            extra=extra,
            reason=refused.message,
        )
    else:
        audit_event_record(
            event_type=KernelEvent.SIGNATURE_REFUSED,
            actor=refused.signer,
            target=refused.signer,
            extra=extra,
            reason=refused.message,
        )


def _authenticate_signer(
    *, signer: User, credentials: SignatureCredentials, meaning: str, target: str
) -> str:
    """Check identity for this signing; return the components used (ES-05, ES-06, ES-09)."""

    def refuse(message: str, code: str, *, failure: bool = False) -> SignatureRefusedError:
        return SignatureRefusedError(
            message,
            code=code,
            signer=signer,
            counts_as_failure=failure,
            meaning=meaning,
            target=target,
        )

    if not signer.is_active or account_is_locked(signer):
        raise refuse("This account is locked or inactive and cannot sign.", "account_locked")
    if not permissions.user_can(signer, Capability.SIGN):
        raise refuse(
            "Your roles do not allow you to sign (administrators, inspectors and integrators "
            "never sign).",
            "not_permitted_to_sign",
        )
    components = ["password"]
    if not credentials.continuous_session:
        # ES-06: the first signing of a session, and any signing outside one, uses every
        # component: the user ID as well as the password.
        if not credentials.username:
            raise refuse("Enter your username as well as your password.", "username_required")
        if credentials.username.strip().lower() != signer.get_username().lower():
            raise refuse(
                "The username does not match the person signing.",
                "username_mismatch",
                failure=True,
            )
        components.insert(0, "username")
    if not credentials.password or not signer.check_password(credentials.password):
        raise refuse("The password is not correct.", "wrong_password", failure=True)
    device = mfa.confirmed_device(signer)
    if permissions.mfa_required(signer) or device is not None:
        if device is None:
            raise refuse(
                "Your role needs a second factor: enrol an authenticator first.", "mfa_not_enrolled"
            )
        if not credentials.otp:
            raise refuse("Enter the 6-digit code from your authenticator.", "otp_required")
        if not mfa.verify_code(device, credentials.otp):
            raise refuse("The authenticator code is not correct.", "otp_invalid", failure=True)
        components.append("totp")
    return "+".join(components)


def sign(
    *,
    signer: User,
    credentials: SignatureCredentials,
    record: models.Model,
    meaning: SignatureMeaning,
    reason: str,
    site_code: str = "",
) -> ElectronicSignature:
    """Re-authenticate `signer` and sign `record` as it stands now.

    Writes the `ElectronicSignature` and a `signature.applied` audit event. Must run inside
    `signing_transaction()`, so a refused attempt is recorded and counted (ES-08).
    """
    if not _in_signing_transaction.get():
        raise RuntimeError("sign() must be called inside signing_transaction().")
    target = f"{record_label(record)}:{record.pk}"
    if meaning not in SignatureMeaning.values:
        raise SignatureRefusedError(
            f"Unknown signature meaning {meaning!r}.", code="invalid_meaning", signer=signer
        )
    if not reason.strip():
        raise SignatureRefusedError(
            "A reason is required for every signature.",
            code="reason_required",
            signer=signer,
            meaning=str(meaning),
            target=target,
        )
    components = _authenticate_signer(
        signer=signer, credentials=credentials, meaning=str(meaning), target=target
    )
    refusal = qualification.signing_refusal(signer, record)
    if refusal:
        raise SignatureRefusedError(
            refusal,
            code="training_required",
            signer=signer,
            meaning=str(meaning),
            target=target,
        )
    signature = ElectronicSignature.objects.create(
        signer=signer,
        signer_username=signer.get_username(),
        printed_name=signer.printed_name,
        meaning=meaning,
        reason=reason.strip(),
        signed_at=timezone.now(),
        target_type=record_label(record),
        target_id=str(record.pk),
        target_repr=str(record)[:255],
        record_hash=content_hash(record),
        components=components,
    )
    audit_event_record(
        event_type=KernelEvent.SIGNATURE_APPLIED,
        actor=signer,
        target=record,
        extra={"meaning": str(meaning), "components": components},
        reason=reason.strip(),
        signature=signature,
        site_code=site_code,
    )
    return signature
