"""Building products and master files for tests through the real services."""

from __future__ import annotations

import datetime as dt

from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite.accounts.models import User
from controlsite.signatures.services import SignatureCredentials
from masterfile import services
from masterfile.choices import ApprovalCapacity, Designation, SupplyStatus, VersionStatus
from masterfile.models import MasterFileVersion, Product
from sites.models import Site
from tests.personas import PASSWORD, unused_totp_code


def signing(user: User) -> SignatureCredentials:
    """What `user` types to sign: username, password and, where the role needs it, a TOTP code
    the device has not accepted yet."""
    otp = ""
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        otp = unused_totp_code(user)
    return SignatureCredentials(username=user.get_username(), password=PASSWORD, otp=otp)


def make_product(
    qa: User,
    reference_site: Site,
    code: str = "CART-01",
    *,
    name: str | None = None,
    shelf_life_minutes: int = 180,
) -> Product:
    return services.product_register(
        actor=qa,
        reason="new product",
        code=code,
        name=name or f"Product {code}",
        designation=Designation.POC,
        designation_reference=f"DM-{code}",
        designation_date=dt.date(2026, 3, 1),
        dosage_form="Suspension for infusion",
        shelf_life_minutes=shelf_life_minutes,
        supply_status=SupplyStatus.INVESTIGATIONAL,
        reference_site=reference_site,
    )


def fill_sections(qa: User, version: MasterFileVersion, text: str = "Content of") -> None:
    for section in version.sections.order_by("position"):
        services.section_update(
            actor=qa,
            section=section,
            body=f"{text} {section.title}.",
            reason="write the section",
        )


def approve(qa: User, qp: User, version: MasterFileVersion) -> MasterFileVersion:
    services.version_approve(
        actor=qa,
        version=version,
        capacity=ApprovalCapacity.QA,
        credentials=signing(qa),
        reason="content is right",
    )
    return services.version_approve(
        actor=qp,
        version=version,
        capacity=ApprovalCapacity.QP,
        credentials=signing(qp),
        reason="fit for release decisions",
    )


def make_effective_version(qa: User, qp: User, product: Product) -> MasterFileVersion:
    """Drive the product's open draft (or a new one) all the way to effective."""
    master_file = product.master_file
    version = master_file.versions.filter(status=VersionStatus.DRAFT).first()
    if version is None:
        version = services.draft_start(actor=qa, master_file=master_file, reason="next edition")
    fill_sections(qa, version, text=f"v{version.number}:")
    if version.number > 1:
        services.change_summary_set(
            actor=qa, version=version, summary="Periodic update.", reason="summary"
        )
    services.version_submit(actor=qa, version=version, reason="ready for review")
    approve(qa, qp, version)
    services.version_make_effective(actor=qa, version=version, reason="approved; in force")
    version.refresh_from_db()
    assert version.status == VersionStatus.EFFECTIVE
    return version
