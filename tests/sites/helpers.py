"""Building sites for tests through the real services."""

from __future__ import annotations

from controlsite.accounts.models import User
from controlsite.signatures.services import SignatureCredentials
from sites import services
from sites.choices import SiteAction, SiteKind, SiteStatus
from sites.models import Site
from tests.personas import PASSWORD

# The actions that walk a new site to each status.
PATH_TO: dict[SiteStatus, list[SiteAction]] = {
    SiteStatus.PROPOSED: [],
    SiteStatus.ONBOARDING: [SiteAction.START_ONBOARDING],
    SiteStatus.QUALIFIED: [SiteAction.START_ONBOARDING, SiteAction.QUALIFY],
    SiteStatus.ACTIVE: [SiteAction.START_ONBOARDING, SiteAction.QUALIFY, SiteAction.ACTIVATE],
    SiteStatus.PAUSED: [
        SiteAction.START_ONBOARDING,
        SiteAction.QUALIFY,
        SiteAction.ACTIVATE,
        SiteAction.PAUSE,
    ],
    SiteStatus.SUSPENDED: [
        SiteAction.START_ONBOARDING,
        SiteAction.QUALIFY,
        SiteAction.ACTIVATE,
        SiteAction.SUSPEND,
    ],
    SiteStatus.CEASED: [SiteAction.CEASE],
}


def creds(user: User) -> SignatureCredentials:
    return SignatureCredentials(username=user.get_username(), password=PASSWORD)


def complete_checklist(qa: User, site: Site) -> None:
    for item in site.checklist.all():
        services.checklist_item_attach_evidence(
            actor=qa, item=item, reference=f"DOC-{item.key}", reason="evidence on file"
        )
        services.checklist_item_sign_off(
            actor=qa, item=item, credentials=creds(qa), reason="evidence reviewed"
        )


def make_site(
    qa: User,
    code: str,
    status: SiteStatus = SiteStatus.PROPOSED,
    kind: SiteKind = SiteKind.POC_HOSPITAL,
    **fields: object,
) -> Site:
    site = services.site_register(
        actor=qa,
        code=code,
        name=f"Site {code}",
        kind=kind,
        reason="new spoke",
        **fields,  # type: ignore[arg-type]
    )
    for action in PATH_TO[status]:
        if action == SiteAction.QUALIFY:
            complete_checklist(qa, site)
        services.site_transition(
            actor=qa, site=site, action=action, reason=f"test: {action}", credentials=creds(qa)
        )
    site.refresh_from_db()
    assert site.status == status
    return site
