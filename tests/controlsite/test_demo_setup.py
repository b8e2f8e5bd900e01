"""`manage.py demo_setup` and `manage.py totp_code`: the accounts `make demo` prints."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from pytest_django import DjangoDbBlocker

from controlsite.accounts import permissions
from controlsite.accounts.models import RoleGrant, User
from controlsite.accounts.roles import Role
from controlsite.api.models import ApiToken
from controlsite.audit.events import KernelEvent
from controlsite.audit.models import AuditEvent
from controlsite.audit.services import audit_chain_verify
from controlsite.management.commands.demo_setup import DEMO_PEOPLE
from controlsite.signatures.models import ElectronicSignature
from masterfile.models import MasterFileVersion, Product, ReviewComment, Section
from sites.choices import (
    FindingGrade,
    NotificationKind,
    SiteAction,
    SiteKind,
    SiteRole,
    SiteStatus,
)
from sites.demo import DEMO_SITES
from sites.events import SiteEvent
from sites.models import (
    AuditFinding,
    ControlSite,
    Equipment,
    NamedQP,
    RegulatoryNotification,
    Site,
    SiteAudit,
    SiteMembership,
)
from sites.selectors import sites_visible_to
from tests.personas import totp_code
from tests.worlds import shared_rows


def run(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "users": User.objects.count(),
        "grants": RoleGrant.objects.count(),
        "devices": TOTPDevice.objects.count(),
        "tokens": ApiToken.objects.count(),
        "events": AuditEvent.objects.count(),
        "signatures": ElectronicSignature.objects.count(),
        "sites": Site.objects.count(),
        "site_history": Site.history.count(),
        "memberships": SiteMembership.objects.count(),
        "equipment": Equipment.objects.count(),
        "audits": SiteAudit.objects.count(),
        "notifications": RegulatoryNotification.objects.count(),
        "products": Product.objects.count(),
        "versions": MasterFileVersion.objects.count(),
        "version_history": MasterFileVersion.history.count(),
        "sections": Section.objects.count(),
        "comments": ReviewComment.objects.count(),
    }


#
# On the demo: `demo_setup` runs twice for the class (tests/worlds.py), and each test's own changes
# are rolled back when it ends
#


@dataclasses.dataclass(frozen=True)
class DemoRuns:
    first: str  # what the first run printed
    after_first: dict[str, int]  # the counts after it
    second: str  # what the second run, on the first's data, printed


@pytest.fixture(scope="class")
def _demo_runs(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[DemoRuns]:
    with shared_rows(django_db_blocker):
        with django_db_blocker.unblock():
            first = run("demo_setup")
            after_first = counts()
            second = run("demo_setup")
        yield DemoRuns(first, after_first, second)


@pytest.fixture
def demo(db: None, _demo_runs: DemoRuns) -> DemoRuns:
    return _demo_runs


class TestOnTheDemo:
    def test_demo_setup_gives_every_role_a_user_and_a_second_run_changes_nothing(
        self, demo: DemoRuns
    ) -> None:
        first, after_first, second = demo.first, demo.after_first, demo.second

        assert counts() == after_first
        # One demo person per role; the training demo adds two more operators of its own (a lapsed
        # refresher and a new starter, TR-04), made by the administrator.
        usernames = [person.username for person in DEMO_PEOPLE]
        demo_people = User.objects.filter(username__in=usernames)
        assert demo_people.count() == len(DEMO_PEOPLE) == len(Role)
        assert after_first["users"] == len(DEMO_PEOPLE) + 2
        for role in Role:
            holders = [u for u in demo_people if role in permissions.user_roles(u)]
            assert len(holders) == 1, role
        for username in ("qp", "admin"):
            user = User.objects.get(username=username)
            assert permissions.mfa_required(user)
            assert TOTPDevice.objects.filter(user=user, confirmed=True).count() == 1
        assert not TOTPDevice.objects.exclude(user__username__in=["qp", "admin"]).exists()
        inspector = RoleGrant.objects.get(user__username="inspector", role=Role.INSPECTOR)
        assert inspector.expires_at is not None

        # Every write went through an audited path with the reason "demo data".
        created = AuditEvent.objects.filter(
            event_type=KernelEvent.USER_CREATED,
            target_id__in=[str(pk) for pk in demo_people.values_list("pk", flat=True)],
        )
        assert created.count() == len(DEMO_PEOPLE)
        assert set(created.values_list("reason", flat=True)) == {"demo data"}
        assert AuditEvent.objects.filter(event_type=KernelEvent.MFA_ENROLLED).count() == 2
        assert User.history.filter(
            username__in=usernames, history_change_reason="demo data"
        ).count() == len(DEMO_PEOPLE)
        assert audit_chain_verify().intact

        # The token secret is printed once, when it is made; the TOTP secrets every time.
        assert ApiToken.objects.filter(user__username="integrator").count() == 1
        assert "cst_" in first
        assert "cst_" not in second
        for output in (first, second):
            assert "ControlSite-demo-2026" in output
            for person in DEMO_PEOPLE:
                assert person.username in output

    def test_demo_setup_makes_twelve_sites_in_every_status_through_the_services(
        self, demo: DemoRuns
    ) -> None:
        first, after_first, second = demo.first, demo.after_first, demo.second

        # A second run adds no site, event, signature or record of any kind.
        assert counts() == after_first
        assert after_first["sites"] == len(DEMO_SITES) == 12
        assert audit_chain_verify().intact

        statuses = {site.status for site in Site.objects.all()}
        assert statuses == set(SiteStatus.values)
        assert Site.objects.filter(status=SiteStatus.ACTIVE).count() >= 3
        assert {site.kind for site in Site.objects.all()} == set(SiteKind.values)
        for site in Site.objects.all():
            assert site.code in first
            assert site.code in second

        # Every site got there along the lifecycle, each step an audited event with a reason;
        # activation, suspension and cessation carry QA's e-signature.
        changes = AuditEvent.objects.filter(event_type=SiteEvent.STATUS_CHANGED)
        assert "" not in set(changes.values_list("reason", flat=True))
        for site in Site.objects.exclude(status=SiteStatus.PROPOSED):
            path = [
                e.extra_data["new"] for e in changes.filter(site_code=site.code).order_by("seq")
            ]
            assert path[-1] == site.status, site.code
        signed = changes.filter(extra_data__action__in=["activate", "suspend", "cease"])
        assert signed.exists()
        assert not signed.filter(signature__isnull=True).exists()
        site_signatures = ElectronicSignature.objects.filter(target_type__startswith="sites.")
        assert set(site_signatures.values_list("signer_username", flat=True)) == {"qa"}
        qualified_once = Site.objects.filter(
            status__in=[
                SiteStatus.QUALIFIED,
                SiteStatus.ACTIVE,
                SiteStatus.PAUSED,
                SiteStatus.SUSPENDED,
            ]
        )
        for site in qualified_once:
            assert not site.checklist.filter(status="open").exists(), site.code
        onboarding = Site.objects.get(code="NOT1")
        assert onboarding.status == SiteStatus.ONBOARDING
        assert 0 < onboarding.checklist.filter(status="done").count() < onboarding.checklist.count()

        # The Control Site, with the demo QP named on the licence.
        control = ControlSite.objects.get()
        assert control.scope_poc
        assert control.scope_mm
        assert control.licence_number.startswith("MIA ")
        assert NamedQP.objects.filter(user__username="qp", named_until__isnull=True).count() == 1

        # The site lead and the operator see a few sites, QA and the inspector all of them.
        users = {u.username: u for u in User.objects.all()}
        lead_sites = set(
            SiteMembership.objects.filter(
                user__username="sitelead", role=SiteRole.SITE_LEAD, ended_at__isnull=True
            ).values_list("site__code", flat=True)
        )
        assert 2 <= len(lead_sites) <= 5  # the sites they are nominated for, and the demo batches'
        assert set(sites_visible_to(users["sitelead"]).values_list("code", flat=True)) == lead_sites
        nominated = set(
            Site.objects.filter(nominated_person__username="sitelead").values_list(
                "code", flat=True
            )
        )
        assert 2 <= len(nominated) <= 3 and nominated <= lead_sites
        assert all(Site.objects.get(code=code).status == SiteStatus.ACTIVE for code in lead_sites)
        operator_sites = set(sites_visible_to(users["operator"]).values_list("code", flat=True))
        assert 1 <= len(operator_sites) <= 5  # their own sites and the demo batches'
        assert operator_sites <= lead_sites
        assert sites_visible_to(users["qa"]).count() == 12
        assert sites_visible_to(users["inspector"]).count() == 12
        assert not sites_visible_to(users["admin"]).exists()

        # Equipment with due dates (one overdue), audits planned and done with graded findings,
        # a modular unit that moved twice, and the MHRA log with one notification sent.
        today = timezone.localdate()
        assert Equipment.objects.filter(next_due__lt=today).count() == 1
        assert Equipment.objects.filter(
            next_due__gte=today, next_due__lte=today + dt.timedelta(days=30)
        ).exists()
        assert set(Equipment.objects.values_list("site__status", flat=True).distinct()) <= {
            SiteStatus.ACTIVE,
            SiteStatus.PAUSED,
        }
        assert SiteAudit.objects.filter(status="planned").exists()
        assert SiteAudit.objects.filter(status="done").exists()
        assert set(AuditFinding.objects.values_list("grade", flat=True)) == set(FindingGrade.values)
        moved = [s for s in Site.objects.filter(kind=SiteKind.MODULAR_UNIT) if s.moves.count() == 3]
        assert len(moved) == 1  # where it was registered, then two moves
        latest = moved[0].moves.first()
        assert latest is not None
        assert moved[0].current_location == latest.location
        sent = RegulatoryNotification.objects.filter(sent_on__isnull=False)
        assert list(sent.values_list("reference", flat=True)) == ["MHRA-DM-2026-0142"]
        kinds = set(RegulatoryNotification.objects.values_list("kind", flat=True))
        assert {
            NotificationKind.SITE_ADDED,
            NotificationKind.SITE_SUSPENDED,
            NotificationKind.SITE_CEASED,
            NotificationKind.QP_CHANGED,
        } <= kinds

        # Every history row of a site names the QA user who acted and the reason.
        assert set(Site.history.values_list("history_username", flat=True)) == {"qa"}
        assert "" not in set(Site.history.values_list("history_change_reason", flat=True))

    def test_demo_setup_leaves_what_people_changed_in_the_demo_alone(self, demo: DemoRuns) -> None:
        from sites import services

        qa = User.objects.get(username="qa")
        services.control_site_save(
            actor=qa,
            name="Renamed Control Site",
            address="Elsewhere",
            licence_number="MIA 12345/0002",
            scope_poc=True,
            scope_mm=False,
            regulator_contacts="",
            reason="renamed in the demo",
        )
        services.site_transition(
            actor=qa,
            site=Site.objects.get(code="BRS1"),
            action=SiteAction.START_ONBOARDING,
            reason="started in the demo",
        )
        before = counts()
        run("demo_setup")
        assert counts() == before
        assert ControlSite.objects.get().name == "Renamed Control Site"
        assert Site.objects.get(code="BRS1").status == SiteStatus.ONBOARDING

    def test_demo_setup_keeps_the_same_totp_secret_on_a_rerun(self, demo: DemoRuns) -> None:
        key = TOTPDevice.objects.get(user__username="qp").key
        TOTPDevice.objects.filter(user__username="qp").delete()
        run("demo_setup")
        assert TOTPDevice.objects.get(user__username="qp").key == key

    def test_totp_code_prints_what_the_authenticator_shows(self, demo: DemoRuns) -> None:
        qp = User.objects.get(username="qp")
        before = totp_code(qp)
        printed = run("totp_code", "qp").strip()
        after = totp_code(qp)
        assert printed in {before, after}  # a 30 s step may turn between the two reads
        assert len(printed) == 6
        assert printed.isdigit()

    def test_totp_code_refuses_a_user_without_an_authenticator(self, demo: DemoRuns) -> None:
        with pytest.raises(CommandError, match="no confirmed TOTP authenticator"):
            run("totp_code", "qa")
        with pytest.raises(CommandError, match="No user"):
            run("totp_code", "nobody")


def test_demo_setup_is_refused_in_production(db, settings):
    settings.ENVIRONMENT = "production"
    with pytest.raises(CommandError, match="refused in production"):
        run("demo_setup")
    assert not User.objects.exists()
    assert not Site.objects.exists()


@pytest.mark.django_db
def test_create_administrator_makes_an_audited_administrator(monkeypatch):
    monkeypatch.setenv("CONTROLSITE_ADMIN_PASSWORD", "First-admin-password-2026")
    call_command(
        "create_administrator",
        "itadmin",
        "--first-name",
        "Alex",
        "--last-name",
        "Morgan",
        "--email",
        "it@example.org",
    )
    user = User.objects.get(username="itadmin")
    assert permissions.user_roles(user) == {Role.SYSADMIN}
    assert user.check_password("First-admin-password-2026")
    assert AuditEvent.objects.filter(
        target_id=str(user.pk), event_type="access.role_granted"
    ).exists()


def test_the_demo_registry_holds_one_loader_per_app():
    from controlsite import demo

    names = [loader.name for loader in demo.loaders()]
    assert "sites" in names
    assert names.index("sites") < names.index("masterfile")  # products need the sites
    with pytest.raises(ValueError, match="already registered"):
        demo.register(demo.DemoLoader("sites", lambda: demo.DemoSection("other", ())))
