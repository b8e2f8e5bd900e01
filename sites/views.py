"""The sites pages: the register, a site's page, its lifecycle, checklist, people, equipment,
audits and moves, the Control Site record and the MHRA log.

Views stay thin: they fetch through a selector (a site someone may not see is a 404, never a
403), bind a form, call one service and redirect. A refused request re-renders the page with the
form as it was typed and the service's message, under the service's status code (400 bad input,
403 not allowed, 409 refused by the lifecycle, 422 signature refused).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import models
from django.db.models import Prefetch
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from controlsite import dashboard
from controlsite.accounts import permissions
from controlsite.accounts.http import request_user
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.audit.events import KernelEvent, event_label
from controlsite.audit.models import AuditEvent
from controlsite.audit.services import record_label
from controlsite.errors import ApplicationError, PermissionRefusedError
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import (
    SignatureRefusedError,
    signature_is_valid,
    signatures_for,
)
from sites import services
from sites.choices import (
    ACTION_NOTIFICATION,
    ACTION_TRANSITIONS,
    ALERTING_ACTIONS,
    AUDIT_STATUS_BADGE,
    CHECKLIST_BADGE,
    DEFAULT_DUE_DAYS,
    EQUIPMENT_BADGE,
    FINDING_BADGE,
    SIGNED_ACTIONS,
    SITE_ROLE_BADGE,
    STATUS_BADGE,
    ChecklistItemStatus,
    EquipmentStatus,
    FindingGrade,
    NotificationKind,
    SiteAction,
    SiteAuditStatus,
    SiteKind,
    SiteRole,
    SiteStatus,
)
from sites.events import SiteEvent
from sites.forms import (
    AuditCompleteForm,
    AuditPlanForm,
    ControlSiteForm,
    EquipmentAddForm,
    EquipmentEditForm,
    EvidenceForm,
    FindingForm,
    MemberAddForm,
    MoveForm,
    NamedQPForm,
    NotificationSentForm,
    ReasonForm,
    SiteEditForm,
    SiteFilterForm,
    SiteRegisterForm,
    TransitionForm,
)
from sites.models import (
    AuditFinding,
    Equipment,
    NamedQP,
    OnboardingItem,
    RegulatoryNotification,
    Site,
    SiteAudit,
    SiteMembership,
)
from sites.oversight import (
    FLAGGED_CHOICES,
    REFRESH_SECONDS,
    OversightQuery,
    cell_html,
    oversight_table,
    status_choices,
)
from sites.selectors import (
    SiteFilters,
    control_site,
    memberships_visible_to,
    named_qps,
    open_checklist_items,
    regulatory_notifications_visible_to,
    site_get_for_user,
    site_list,
    site_status_counts,
    site_timeline,
    user_roles_at_site,
)

LIST_PAGE_SIZE = 100
TIMELINE_PAGE_SIZE = 50
MHRA_PAGE_SIZE = 100

# The main road through the lifecycle, drawn as a stepper; paused, suspended and ceased are
# shown as a detour after it.
LIFECYCLE_ROAD = (
    SiteStatus.PROPOSED,
    SiteStatus.ONBOARDING,
    SiteStatus.QUALIFIED,
    SiteStatus.ACTIVE,
)

# What each step does, in words, for the confirmation page (the services do it).
ACTION_CONSEQUENCES: dict[SiteAction, str] = {
    SiteAction.START_ONBOARDING: (
        "The site starts working through its onboarding checklist: evidence for each item, "
        "then a signed sign-off."
    ),
    SiteAction.QUALIFY: (
        "Confirms every checklist item is signed off. Qualification is refused while any item "
        "is open."
    ),
    SiteAction.ACTIVATE: (
        "The site may make product from now on: batches may start, steps be signed and batches "
        "be certified there."
    ),
    SiteAction.PAUSE: (
        "Manufacture stops at the site until it is resumed: no batch may start, no step be "
        "signed and nothing made there be certified."
    ),
    SiteAction.RESUME: "The site may make product again.",
    SiteAction.SUSPEND: (
        "Manufacture stops at once: no batch may start, no step be signed and nothing made "
        "there be certified until the site is reinstated."
    ),
    SiteAction.REINSTATE: "The site may make product again after its suspension.",
    SiteAction.CEASE: (
        "The site stops for good: nothing is made there again. Its code is never reused and "
        "its records are kept."
    ),
}

ONBOARDING_STATES = frozenset({SiteStatus.PROPOSED, SiteStatus.ONBOARDING})
FORWARD_ACTIONS = frozenset(
    {
        SiteAction.START_ONBOARDING,
        SiteAction.QUALIFY,
        SiteAction.ACTIVATE,
        SiteAction.RESUME,
        SiteAction.REINSTATE,
    }
)
STOPPING_ACTIONS = frozenset({SiteAction.SUSPEND, SiteAction.CEASE})

# A banner on the site's page while it may not make product (the colour follows its badge).
STATUS_NOTICE: dict[str, str] = {
    SiteStatus.PAUSED: (
        "Manufacture is paused here: no batch may start, no step be signed and nothing made "
        "here be certified until the site is resumed."
    ),
    SiteStatus.SUSPENDED: (
        "Suspended: no batch may start, no step be signed and nothing made here be certified "
        "until the site is reinstated with a QA signature."
    ),
    SiteStatus.CEASED: (
        "This site has ceased. Its code is never reused and its records are kept; nothing "
        "changes here any more."
    ),
}
MESSAGE_LEVEL: dict[str, str] = {"block": "error", "warn": "warning", "ok": "success"}

_EVIDENCE_ERRORS = frozenset({"evidence_too_large", "evidence_empty", "evidence_type"})


#
# Small helpers
#


@dataclasses.dataclass(frozen=True)
class Badge:
    """A coloured label; the colour comes from a choices module's badge dict."""

    label: str
    colour: str


def badge(choices: type[models.TextChoices], colours: dict[str, str], value: str) -> Badge:
    try:
        label = str(choices(value).label)
    except ValueError:
        label = value
    return Badge(label=label, colour=colours.get(value, "muted"))


def _site_or_404(request: HttpRequest, code: str) -> Site:
    try:
        return site_get_for_user(user=request.user, code=code)
    except Site.DoesNotExist as exc:
        raise Http404 from exc


def _can_manage(user: Any) -> bool:
    """Only Control Site QA sees the forms that change sites (the services check again)."""
    return permissions.user_can(user, Capability.MANAGE_QUALITY_RECORDS)


def _require_manager(request: HttpRequest) -> User:
    user = request_user(request)
    if not _can_manage(user):
        raise PermissionDenied
    return user


def _can_edit_equipment(user: Any, site: Site) -> bool:
    return _can_manage(user) or SiteRole.SITE_LEAD in user_roles_at_site(user, site)


def _refused(request: HttpRequest, exc: ApplicationError) -> int:
    """Show a service's refusal as a message; its status code answers the request."""
    if isinstance(exc, PermissionRefusedError):
        raise PermissionDenied(exc.message) from exc
    messages.error(request, exc.message)
    return exc.status_code


def _refused_signing(
    request: HttpRequest, exc: ApplicationError, form: SignatureForm | None
) -> int:
    """A refused signature (wrong password, missing code…) is shown inside the signature
    dialog, which then opens again by itself; any other refusal as a message."""
    if form is not None and isinstance(exc, SignatureRefusedError):
        form.add_error(None, exc.message)
        return exc.status_code
    return _refused(request, exc)


def _invalid(request: HttpRequest, what: str) -> int:
    messages.error(request, f"{what}: correct the fields marked below.")
    return 400


def _is_htmx_partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and not htmx.boosted


def _due_days(kind: NotificationKind) -> int:
    return {**DEFAULT_DUE_DAYS, **settings.REGULATORY_NOTIFICATION_DUE_DAYS}[kind]


#
# The register
#


@dataclasses.dataclass(frozen=True)
class SiteRow:
    site: Site
    status: Badge
    open_items: int


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """The register: filters, status counts and one page of sites (a fixed number of queries
    whatever the number of sites: one for the page, one for the counts, one for the total)."""
    form = SiteFilterForm(request.GET or None)
    filters_valid = not form.is_bound or form.is_valid()
    data: dict[str, Any] = form.cleaned_data if form.is_bound and filters_valid else {}
    filters = SiteFilters(
        status=data.get("status", ""),
        kind=data.get("kind", ""),
        host=(data.get("host") or "").strip(),
        q=(data.get("q") or "").strip(),
    )
    counts = site_status_counts(user=request.user)
    rows: list[SiteRow] = []
    has_more = False
    matching = 0
    if filters_valid:
        qs = site_list(user=request.user, filters=filters)
        filtered = any(dataclasses.astuple(filters))
        matching = qs.count() if filtered else sum(counts.values())
        page = qs.filter(code__gt=data["after"]) if data.get("after") else qs
        sites = list(page[: LIST_PAGE_SIZE + 1])
        has_more = len(sites) > LIST_PAGE_SIZE
        rows = [
            SiteRow(
                site=s,
                status=badge(SiteStatus, STATUS_BADGE, s.status),
                # Open checklist items matter only until the site is qualified.
                open_items=getattr(s, "open_items", 0) if s.status in ONBOARDING_STATES else 0,
            )
            for s in sites[:LIST_PAGE_SIZE]
        ]
    query = request.GET.copy()
    query.pop("after", None)
    base_query = query.urlencode()
    if has_more:
        query["after"] = rows[-1].site.code
    status_query = request.GET.copy()
    status_query.pop("after", None)
    status_query.pop("status", None)
    chips = []
    for status in SiteStatus:
        status_query["status"] = status.value
        chips.append(
            {
                "badge": badge(SiteStatus, STATUS_BADGE, status.value),
                "count": counts.get(status.value, 0),
                "query": status_query.urlencode(),
                "current": filters.status == status.value,
            }
        )
    context = {
        "form": form,
        "filters_valid": filters_valid,
        "rows": rows,
        "chips": chips,
        "total": sum(counts.values()),
        "matching": matching,
        "filtered": any(dataclasses.astuple(filters)),
        "next_query": query.urlencode() if has_more else "",
        "first_url": (
            reverse("sites:index") + (f"?{base_query}" if base_query else "")
            if data.get("after")
            else ""
        ),
        "first_code": rows[0].site.code if rows else "",
        "last_code": rows[-1].site.code if rows else "",
        "can_manage": _can_manage(request.user),
    }
    template = "sites/partials/_site_rows.html" if _is_htmx_partial(request) else "sites/list.html"
    return render(request, template, context)


@login_required
def create(request: HttpRequest) -> HttpResponse:
    actor = _require_manager(request)
    form = SiteRegisterForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                site = services.site_register(
                    actor=actor,
                    code=data["code"],
                    name=data["name"],
                    kind=SiteKind(data["kind"]),
                    reason=data["reason"],
                    host_organisation=data["host_organisation"],
                    address=data["address"],
                    current_location=data["current_location"],
                    nominated_person=data["nominated_person"],
                    technical_agreement_ref=data["technical_agreement_ref"],
                )
            except ApplicationError as exc:
                status = _refused(request, exc)
                if exc.code == "site_code_taken":
                    form.add_error("code", exc.message)
            else:
                messages.success(
                    request,
                    f"Site {site.code} registered as proposed, with its onboarding checklist. "
                    "Next: start onboarding.",
                )
                return redirect("sites:detail", site.code)
        else:
            status = _invalid(request, "The site was not registered")
    return render(request, "sites/site_form.html", {"form": form, "site": None}, status=status)


@login_required
def edit(request: HttpRequest, code: str) -> HttpResponse:
    site = _site_or_404(request, code)
    actor = _require_manager(request)
    initial = {
        "name": site.name,
        "kind": site.kind,
        "host_organisation": site.host_organisation,
        "address": site.address,
        "nominated_person": site.nominated_person_id,
        "technical_agreement_ref": site.technical_agreement_ref,
    }
    form = SiteEditForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            changes = {k: form.cleaned_data[k] for k in form.changed_data if k != "reason"}
            try:
                services.site_update(
                    actor=actor, site=site, reason=form.cleaned_data["reason"], changes=changes
                )
            except ApplicationError as exc:
                status = _refused(request, exc)
            else:
                if changes:
                    messages.success(request, f"{site.code}: details saved.")
                else:
                    messages.info(request, f"{site.code}: nothing was changed.")
                return redirect("sites:detail", site.code)
        else:
            status = _invalid(request, "Not saved")
    return render(request, "sites/site_form.html", {"form": form, "site": site}, status=status)


#
# A site's page
#


@dataclasses.dataclass(frozen=True)
class Step:
    label: str
    state: str  # done | current | todo
    colour: str = ""


@dataclasses.dataclass(frozen=True)
class Change:
    field: str
    old: str
    new: str


@dataclasses.dataclass
class TimelineEntry:
    event: AuditEvent
    label: str
    kind: str  # status | signature | other
    old: Badge | None = None
    new: Badge | None = None
    action: str = ""
    text: str = ""
    changes: list[Change] = dataclasses.field(default_factory=list)
    signature: ElectronicSignature | None = None
    validity: Badge | None = None


def _lifecycle(site: Site) -> list[Step]:
    status = SiteStatus(site.status)
    if status in LIFECYCLE_ROAD:
        here = LIFECYCLE_ROAD.index(status)
        return [
            Step(
                label=str(s.label),
                state="done" if i < here else "current" if i == here else "todo",
                colour=STATUS_BADGE[s] if i == here else "",
            )
            for i, s in enumerate(LIFECYCLE_ROAD)
        ]
    # Off the road: paused and suspended come after activation; a ceased site's road is history.
    reached = status != SiteStatus.CEASED
    steps = [Step(label=str(s.label), state="done" if reached else "todo") for s in LIFECYCLE_ROAD]
    steps.append(Step(label=str(status.label), state="current", colour=STATUS_BADGE[status]))
    return steps


def _text(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and len(value) == 10:
        # Dates come back from the JSON details as ISO strings: show them as dates.
        try:
            day = dt.date.fromisoformat(value)
            return f"{day.day} {day:%b %Y}"
        except ValueError:
            return value
    return str(value)


def _changes(extra: dict[str, Any]) -> list[Change]:
    old, new = extra.get("old"), extra.get("new")
    if isinstance(new, dict) or isinstance(old, dict):
        old_d = old if isinstance(old, dict) else {}
        new_d = new if isinstance(new, dict) else {}
        keys = list(dict.fromkeys([*old_d, *new_d]))
        return [
            Change(field=k.replace("_", " "), old=_text(old_d.get(k)), new=_text(new_d.get(k)))
            for k in keys
        ]
    if "old" in extra or "new" in extra:
        return [Change(field="", old=_text(old), new=_text(new))]
    return []


def _describe(event: AuditEvent, names: dict[str, str]) -> str:
    """One line saying what the event's details mean, for the events that need one."""
    extra: dict[str, Any] = event.extra_data if isinstance(event.extra_data, dict) else {}
    kind = event.event_type
    if kind in (SiteEvent.MEMBER_ADDED, SiteEvent.MEMBER_ENDED):
        role = badge(SiteRole, SITE_ROLE_BADGE, str(extra.get("role", ""))).label
        username = str(extra.get("user", ""))
        who = f"{names[username]} ({username})" if username in names else username
        return f"{who} — {role}"
    if kind == SiteEvent.EVIDENCE_ADDED:
        parts = [event.target_repr]
        if extra.get("file"):
            name = str(extra["file"]).rsplit("/", 1)[-1]
            parts.append(f"file {name} (SHA-256 {str(extra.get('sha256', ''))[:12]}…)")
        if extra.get("reference"):
            parts.append(f"reference {extra['reference']}")
        return " · ".join(parts)
    if kind in (SiteEvent.ITEM_SIGNED_OFF, SiteEvent.EQUIPMENT_CHANGED, SiteEvent.AUDIT_DONE):
        return event.target_repr
    if kind == SiteEvent.AUDIT_PLANNED:
        when = _text(extra.get("planned_for"))
        return f"{extra.get('title', event.target_repr)}, planned for {when}"
    if kind == SiteEvent.FINDING_ADDED:
        grade = badge(FindingGrade, FINDING_BADGE, str(extra.get("grade", ""))).label
        return f"{grade} finding"
    if kind == SiteEvent.MHRA_NOTIFICATION_DUE:
        what = badge(NotificationKind, {}, str(extra.get("kind", ""))).label
        return f"{what}: due on {_text(extra.get('due_on'))}"
    if kind == SiteEvent.MHRA_NOTIFICATION_SENT:
        sent = _text(extra.get("sent_on"))
        return f"Sent on {sent}, MHRA reference {extra.get('reference')}"
    if kind == KernelEvent.SIGNATURE_APPLIED:
        return event.target_repr
    return ""


def _signed_records(
    signatures: Iterable[ElectronicSignature], known: Iterable[models.Model]
) -> dict[tuple[str, str], models.Model]:
    """The records the signatures are on: those the page has loaded already, then one query per
    other record type (so validity never costs a query per row)."""
    records = {(record_label(r), str(r.pk)): r for r in known}
    wanted: dict[str, set[str]] = defaultdict(set)
    for sig in signatures:
        if (sig.target_type, sig.target_id) not in records:
            wanted[sig.target_type].add(sig.target_id)
    for label, ids in wanted.items():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue
        for record in model._default_manager.filter(pk__in=ids):
            records[(label, str(record.pk))] = record
    return records


def _validity(sig: ElectronicSignature, records: dict[tuple[str, str], models.Model]) -> Badge:
    record = records.get((sig.target_type, sig.target_id))
    if record is None:
        return Badge("Signed record not found", "block")
    if signature_is_valid(sig, record):
        return Badge("Valid", "ok")
    return Badge("Invalid: record changed since signing", "block")


def _timeline(
    site: Site,
    events: list[AuditEvent],
    known: Iterable[models.Model],
    names: dict[str, str] | None = None,
) -> list[TimelineEntry]:
    signatures = [e.signature for e in events if e.signature is not None]
    records = _signed_records(signatures, known)
    # A signature is shown with the step it signs; its own "signed" event is folded into it.
    carried = {
        e.signature_id for e in events if e.signature_id and e.event_type != "signature.applied"
    }
    entries = []
    for e in events:
        if e.event_type == KernelEvent.SIGNATURE_APPLIED and e.signature_id in carried:
            continue
        extra: dict[str, Any] = e.extra_data if isinstance(e.extra_data, dict) else {}
        entry = TimelineEntry(event=e, label=event_label(e.event_type), kind="other")
        if e.event_type == SiteEvent.STATUS_CHANGED:
            entry.kind = "status"
            entry.old = badge(SiteStatus, STATUS_BADGE, str(extra.get("old", "")))
            entry.new = badge(SiteStatus, STATUS_BADGE, str(extra.get("new", "")))
            try:
                entry.action = str(SiteAction(extra.get("action", "")).label)
            except ValueError:
                entry.action = ""
        elif e.event_type == SiteEvent.REGISTERED:
            new = extra.get("new") or {}
            kind = badge(SiteKind, {}, str(new.get("kind", ""))).label
            entry.text = f"{new.get('code', site.code)} — {new.get('name', '')} ({kind})"
        elif e.event_type == SiteEvent.EQUIPMENT_ADDED:
            new = extra.get("new") or {}
            status = badge(EquipmentStatus, {}, str(new.get("status", ""))).label
            entry.text = f"{new.get('kind', '')} {new.get('serial', '')} — {status}"
        else:
            entry.text = _describe(e, names or {})
            entry.changes = _changes(extra)
        if e.signature is not None:
            entry.signature = e.signature
            entry.validity = _validity(e.signature, records)
            if entry.kind == "other" and e.event_type == KernelEvent.SIGNATURE_APPLIED:
                entry.kind = "signature"
        entries.append(entry)
    return entries


def _timeline_page(
    site: Site,
    before: int | None,
    known: Iterable[models.Model],
    names: dict[str, str] | None = None,
) -> tuple[list[TimelineEntry], int | None]:
    events = site_timeline(site=site, before_seq=before, limit=TIMELINE_PAGE_SIZE + 1)
    older = events[TIMELINE_PAGE_SIZE - 1].seq if len(events) > TIMELINE_PAGE_SIZE else None
    return _timeline(site, events[:TIMELINE_PAGE_SIZE], known, names), older


def _before(request: HttpRequest) -> int | None:
    try:
        value = int(request.GET.get("before", ""))
    except ValueError:
        return None
    return value if value > 0 else None


@dataclasses.dataclass(frozen=True)
class ChecklistRow:
    item: OnboardingItem
    status: Badge
    file_name: str


@dataclasses.dataclass(frozen=True)
class EquipmentRow:
    equipment: Equipment
    status: Badge
    overdue: bool


@dataclasses.dataclass(frozen=True)
class AuditRow:
    audit: SiteAudit
    status: Badge
    findings: list[tuple[AuditFinding, Badge]]


@dataclasses.dataclass(frozen=True)
class MemberRow:
    membership: SiteMembership
    role: Badge
    end_form: ReasonForm


@dataclasses.dataclass(frozen=True)
class ActionLink:
    action: SiteAction
    label: str
    target: Badge
    signed: bool
    url: str
    tone: str  # button-primary | button-danger | ""


def _actions(site: Site) -> list[ActionLink]:
    status = SiteStatus(site.status)
    links = []
    for action, (sources, target) in ACTION_TRANSITIONS.items():
        if status in sources:
            links.append(
                ActionLink(
                    action=action,
                    label=str(action.label),
                    target=badge(SiteStatus, STATUS_BADGE, target.value),
                    signed=action in SIGNED_ACTIONS,
                    url=reverse("sites:transition", args=[site.code, action.value]),
                    tone="button-primary"
                    if action in FORWARD_ACTIONS
                    else "button-danger"
                    if action in STOPPING_ACTIONS
                    else "",
                )
            )
    return links


def _detail_context(
    request: HttpRequest, site: Site, bound: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything the site page shows, in a fixed number of queries."""
    bound = bound or {}
    user = request.user
    today = timezone.localdate()
    can_manage = _can_manage(user)
    checklist = list(site.checklist.select_related("signed_off_by").order_by("position", "key"))
    done = sum(1 for item in checklist if item.status == ChecklistItemStatus.DONE)
    memberships = list(
        memberships_visible_to(user).filter(site=site).order_by("role", "user__last_name")
    )
    members = [
        MemberRow(
            membership=m,
            role=badge(SiteRole, SITE_ROLE_BADGE, m.role),
            end_form=bound.get(f"end-{m.pk}") or ReasonForm(prefix=f"end-{m.pk}"),
        )
        for m in memberships
    ]
    equipment = [
        EquipmentRow(
            equipment=eq,
            status=badge(EquipmentStatus, EQUIPMENT_BADGE, eq.qualification_status),
            overdue=eq.next_due is not None
            and eq.next_due < today
            and eq.qualification_status
            not in (EquipmentStatus.RETIRED, EquipmentStatus.OUT_OF_SERVICE),
        )
        for eq in site.equipment.order_by("kind", "serial_number")
    ]
    audits = [
        AuditRow(
            audit=a,
            status=badge(SiteAuditStatus, AUDIT_STATUS_BADGE, a.status),
            findings=[(f, badge(FindingGrade, FINDING_BADGE, f.grade)) for f in a.findings.all()],
        )
        for a in site.audits.prefetch_related(
            Prefetch("findings", queryset=AuditFinding.objects.order_by("id"))
        )
    ]
    is_modular = site.kind == SiteKind.MODULAR_UNIT
    moves = list(site.moves.all()) if is_modular else []
    mhra = [
        _mhra_row(n, today)
        for n in regulatory_notifications_visible_to(user)
        .filter(site=site)
        .order_by("-event_at", "-id")[:10]
    ]
    names = {m.user.get_username(): m.user.printed_name for m in memberships}
    timeline, older = _timeline_page(site, _before(request), [site, *checklist], names)
    notice = STATUS_NOTICE.get(site.status, "")
    return {
        "status_notice": notice,
        "status_notice_level": MESSAGE_LEVEL.get(STATUS_BADGE[SiteStatus(site.status)], "info"),
        "site": site,
        "status": badge(SiteStatus, STATUS_BADGE, site.status),
        "lifecycle": _lifecycle(site),
        "is_ceased": site.status == SiteStatus.CEASED,
        "is_modular": is_modular,
        "can_manage": can_manage,
        "can_edit_equipment": can_manage or SiteRole.SITE_LEAD in user_roles_at_site(user, site),
        "can_view_mhra": permissions.user_can(user, Capability.VIEW_ALL_SITES),
        "actions": _actions(site) if can_manage else [],
        "checklist": [
            ChecklistRow(
                item=item,
                status=badge(ChecklistItemStatus, CHECKLIST_BADGE, item.status),
                file_name=(item.evidence_file.name or "").rsplit("/", 1)[-1],
            )
            for item in checklist
        ],
        "checklist_done": done,
        "checklist_total": len(checklist),
        "checklist_pct": round(100 * done / len(checklist)) if checklist else 0,
        "members": members,
        "equipment": equipment,
        "audits": audits,
        "moves": moves,
        "mhra": mhra,
        "timeline": timeline,
        "timeline_older": older,
        "timeline_paged": _before(request) is not None,
        "move_form": bound.get("move") or MoveForm(prefix="move"),
        "member_form": bound.get("member") or MemberAddForm(prefix="member"),
        "equipment_form": bound.get("equipment") or EquipmentAddForm(prefix="equipment"),
        "audit_form": bound.get("audit") or AuditPlanForm(prefix="audit"),
        "open_form": next(iter(bound), ""),
        # Panels the apps above `sites` add to this page (training compliance…), design §2.
        "site_panels": dashboard.site_panels_for(request, site),
    }


@login_required
def detail(request: HttpRequest, code: str) -> HttpResponse:
    site = _site_or_404(request, code)
    if _is_htmx_partial(request) and _before(request) is not None:
        checklist = list(site.checklist.all())
        timeline, older = _timeline_page(site, _before(request), [site, *checklist])
        return render(
            request,
            "sites/partials/_timeline_items.html",
            {"site": site, "timeline": timeline, "timeline_older": older},
        )
    return render(request, "sites/detail.html", _detail_context(request, site))


def _detail_again(
    request: HttpRequest, site: Site, bound: dict[str, Any], status: int
) -> HttpResponse:
    """The site page once more, with the form that failed as it was typed, open."""
    site.refresh_from_db()
    return render(
        request, "sites/detail.html", _detail_context(request, site, bound), status=status
    )


#
# The lifecycle
#


@login_required
def transition(request: HttpRequest, code: str, action: str) -> HttpResponse:
    """A lifecycle step's own page: what it will do, the reason, and the QA signature where the
    step needs one. A step that the site's status does not allow is explained, not offered."""
    site = _site_or_404(request, code)
    try:
        verb = SiteAction(action)
    except ValueError as exc:
        raise Http404 from exc
    actor = _require_manager(request)
    signed = verb in SIGNED_ACTIONS
    data = request.POST if request.method == "POST" else None
    sig_form = (
        SignatureForm(data, request=request, meaning=SignatureMeaning.APPROVED) if signed else None
    )
    reason_form = None if signed else TransitionForm(data)
    status = 200
    if request.method == "POST":
        form: SignatureForm | TransitionForm
        if sig_form is not None:
            form = sig_form
        else:
            assert reason_form is not None  # noqa: S101  (one of the two is always built)
            form = reason_form
        if form.is_valid():
            try:
                services.site_transition(
                    actor=actor,
                    site=site,
                    action=verb,
                    reason=form.cleaned_data["reason"],
                    credentials=sig_form.credentials() if sig_form is not None else None,
                )
            except ApplicationError as exc:
                status = _refused_signing(request, exc, sig_form)
                site.refresh_from_db()
            else:
                if sig_form is not None:
                    sig_form.mark_signed()
                messages.success(
                    request,
                    f"{site.code} is now {site.get_status_display().lower()}."
                    + (" Signed: approved." if signed else ""),
                )
                return redirect("sites:detail", site.code)
        else:
            status = _invalid(request, f"Not done: {verb.label.lower()}")
    sources, target = ACTION_TRANSITIONS[verb]
    notification = ACTION_NOTIFICATION.get(verb)
    if (
        verb == SiteAction.ACTIVATE
        and not site.regulatory_notifications.filter(kind=NotificationKind.SITE_ADDED).exists()
    ):
        notification = NotificationKind.SITE_ADDED
    context = {
        "site": site,
        "action": verb,
        "status": badge(SiteStatus, STATUS_BADGE, site.status),
        "target": badge(SiteStatus, STATUS_BADGE, target.value),
        "allowed": SiteStatus(site.status) in sources,
        "sources": [badge(SiteStatus, STATUS_BADGE, s.value) for s in SiteStatus if s in sources],
        "signed": signed,
        "alerts": verb in ALERTING_ACTIONS,
        "consequence": ACTION_CONSEQUENCES[verb],
        "notification": notification.label if notification else "",
        "notification_days": _due_days(notification) if notification else 0,
        "open_items": open_checklist_items(site) if verb == SiteAction.QUALIFY else [],
        "signature_form": sig_form,
        "sign_label": f"{verb.label} and sign",
        "form": reason_form,
    }
    return render(request, "sites/transition.html", context, status=status)


@login_required
@require_POST
def move(request: HttpRequest, code: str) -> HttpResponse:
    site = _site_or_404(request, code)
    actor = _require_manager(request)
    form = MoveForm(request.POST, prefix="move")
    if not form.is_valid():
        return _detail_again(request, site, {"move": form}, _invalid(request, "Move not recorded"))
    try:
        services.site_move(
            actor=actor,
            site=site,
            location=form.cleaned_data["location"],
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        return _detail_again(request, site, {"move": form}, _refused(request, exc))
    messages.success(request, f"{site.code}: the move is recorded.")
    return redirect(reverse("sites:detail", args=[site.code]) + "#locations")


#
# Onboarding checklist
#


def _item_or_404(site: Site, key: str) -> OnboardingItem:
    try:
        return site.checklist.select_related("signed_off_by").get(key=key)
    except OnboardingItem.DoesNotExist as exc:
        raise Http404 from exc


def _item_page(
    request: HttpRequest,
    site: Site,
    item: OnboardingItem,
    *,
    evidence_form: EvidenceForm | None = None,
    signature_form: SignatureForm | None = None,
    status: int = 200,
) -> HttpResponse:
    items = list(site.checklist.order_by("position", "key"))
    done = sum(1 for i in items if i.status == ChecklistItemStatus.DONE)
    position = next((n for n, i in enumerate(items, start=1) if i.pk == item.pk), 0)
    context = {
        "site": site,
        "item": item,
        "item_status": badge(ChecklistItemStatus, CHECKLIST_BADGE, item.status),
        "is_open": item.status == ChecklistItemStatus.OPEN,
        "position": position,
        "count": len(items),
        "done": done,
        "pct": round(100 * done / len(items)) if items else 0,
        "siblings": [(i, badge(ChecklistItemStatus, CHECKLIST_BADGE, i.status)) for i in items],
        "can_manage": _can_manage(request.user),
        # Prefixed: the signature dialog on the same page has its own "reason" field.
        "evidence_form": evidence_form or EvidenceForm(prefix="evidence"),
        "signature_form": signature_form
        or SignatureForm(request=request, meaning=SignatureMeaning.VERIFIED),
        "signatures": signatures_for(item),
        "evidence_name": (item.evidence_file.name or "").rsplit("/", 1)[-1],
    }
    return render(request, "sites/checklist_item.html", context, status=status)


@login_required
def checklist_item(request: HttpRequest, code: str, key: str) -> HttpResponse:
    site = _site_or_404(request, code)
    return _item_page(request, site, _item_or_404(site, key))


@login_required
@require_POST
def evidence(request: HttpRequest, code: str, key: str) -> HttpResponse:
    site = _site_or_404(request, code)
    item = _item_or_404(site, key)
    actor = _require_manager(request)
    form = EvidenceForm(request.POST, request.FILES, prefix="evidence")
    if not form.is_valid():
        status = _invalid(request, "Evidence not attached")
        return _item_page(request, site, item, evidence_form=form, status=status)
    try:
        services.checklist_item_attach_evidence(
            actor=actor,
            item=item,
            reason=form.cleaned_data["reason"],
            upload=form.cleaned_data["file"] or None,
            reference=form.cleaned_data["reference"],
        )
    except ApplicationError as exc:
        status = _refused(request, exc)
        if exc.code in _EVIDENCE_ERRORS:
            form.add_error("file", exc.message)
        return _item_page(request, site, item, evidence_form=form, status=status)
    messages.success(request, f"Evidence attached to “{item.title}”. Next: sign it off.")
    return redirect("sites:item", site.code, item.key)


@login_required
@require_POST
def signoff(request: HttpRequest, code: str, key: str) -> HttpResponse:
    site = _site_or_404(request, code)
    item = _item_or_404(site, key)
    actor = _require_manager(request)
    form = SignatureForm(request.POST, request=request, meaning=SignatureMeaning.VERIFIED)
    if not form.is_valid():
        status = _invalid(request, "Not signed off")
        return _item_page(request, site, item, signature_form=form, status=status)
    try:
        services.checklist_item_sign_off(
            actor=actor,
            item=item,
            credentials=form.credentials(),
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        status = _refused_signing(request, exc, form)
        item.refresh_from_db()
        return _item_page(request, site, item, signature_form=form, status=status)
    form.mark_signed()
    still_open = open_checklist_items(site)
    if still_open:
        messages.success(
            request,
            f"Signed off: “{item.title}”. {len(still_open)} item"
            f"{'s' if len(still_open) != 1 else ''} still open; next: “{still_open[0].title}”.",
        )
        return redirect("sites:item", site.code, still_open[0].key)
    messages.success(
        request,
        f"Signed off: “{item.title}”. Every checklist item is signed off: ready to qualify.",
    )
    return redirect(reverse("sites:detail", args=[site.code]) + "#checklist")


@login_required
def evidence_file(request: HttpRequest, code: str, key: str) -> FileResponse:
    """The evidence file, to whoever may see the site (it is never served from /media/)."""
    site = _site_or_404(request, code)
    item = _item_or_404(site, key)
    if not item.evidence_file:
        raise Http404
    name = (item.evidence_file.name or "evidence").rsplit("/", 1)[-1]
    return FileResponse(item.evidence_file.open("rb"), as_attachment=True, filename=name)


#
# Memberships
#


@login_required
@require_POST
def member_add(request: HttpRequest, code: str) -> HttpResponse:
    site = _site_or_404(request, code)
    actor = _require_manager(request)
    form = MemberAddForm(request.POST, prefix="member")
    if not form.is_valid():
        return _detail_again(request, site, {"member": form}, _invalid(request, "Not added"))
    person: User = form.cleaned_data["user"]
    try:
        services.membership_add(
            actor=actor,
            site=site,
            user=person,
            role=SiteRole(form.cleaned_data["role"]),
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        return _detail_again(request, site, {"member": form}, _refused(request, exc))
    role = SiteRole(form.cleaned_data["role"]).label.lower()
    messages.success(request, f"{person.printed_name} is now {role} at {site.code}.")
    return redirect(reverse("sites:detail", args=[site.code]) + "#members")


@login_required
@require_POST
def member_end(request: HttpRequest, code: str, pk: int) -> HttpResponse:
    site = _site_or_404(request, code)
    try:
        membership = memberships_visible_to(request.user).get(site=site, pk=pk)
    except SiteMembership.DoesNotExist as exc:
        raise Http404 from exc
    actor = _require_manager(request)
    key = f"end-{membership.pk}"
    form = ReasonForm(request.POST, prefix=key)
    if not form.is_valid():
        return _detail_again(request, site, {key: form}, _invalid(request, "Membership not ended"))
    try:
        services.membership_end(
            actor=actor, membership=membership, reason=form.cleaned_data["reason"]
        )
    except ApplicationError as exc:
        return _detail_again(request, site, {key: form}, _refused(request, exc))
    messages.success(
        request,
        f"{membership.user.printed_name} is no longer "
        f"{membership.get_role_display().lower()} at {site.code}.",
    )
    return redirect(reverse("sites:detail", args=[site.code]) + "#members")


#
# Equipment
#


@login_required
@require_POST
def equipment_add(request: HttpRequest, code: str) -> HttpResponse:
    site = _site_or_404(request, code)
    actor = request_user(request)
    if not _can_edit_equipment(actor, site):
        raise PermissionDenied
    form = EquipmentAddForm(request.POST, prefix="equipment")
    if not form.is_valid():
        return _detail_again(request, site, {"equipment": form}, _invalid(request, "Not added"))
    data = form.cleaned_data
    try:
        equipment = services.equipment_add(
            actor=actor,
            site=site,
            kind=data["kind"],
            serial_number=data["serial_number"],
            name=data["name"],
            qualification_status=EquipmentStatus(data["qualification_status"]),
            next_due=data["next_due"],
            reason=data["reason"],
        )
    except ApplicationError as exc:
        return _detail_again(request, site, {"equipment": form}, _refused(request, exc))
    messages.success(request, f"Equipment added: {equipment.kind} {equipment.serial_number}.")
    return redirect(reverse("sites:detail", args=[site.code]) + "#equipment")


@login_required
def equipment_edit(request: HttpRequest, code: str, pk: int) -> HttpResponse:
    site = _site_or_404(request, code)
    try:
        equipment = site.equipment.get(pk=pk)
    except Equipment.DoesNotExist as exc:
        raise Http404 from exc
    actor = request_user(request)
    if not _can_edit_equipment(actor, site):
        raise PermissionDenied
    initial = {
        "name": equipment.name,
        "qualification_status": equipment.qualification_status,
        "next_due": equipment.next_due,
    }
    form = EquipmentEditForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            changes = form.changes()
            if not changes:
                messages.info(request, "Nothing was changed.")
                return redirect(reverse("sites:detail", args=[site.code]) + "#equipment")
            try:
                services.equipment_update(
                    actor=actor,
                    equipment=equipment,
                    reason=form.cleaned_data["reason"],
                    changes=changes,
                )
            except ApplicationError as exc:
                status = _refused(request, exc)
            else:
                messages.success(request, f"Saved: {equipment.kind} {equipment.serial_number}.")
                return redirect(reverse("sites:detail", args=[site.code]) + "#equipment")
        else:
            status = _invalid(request, "Not saved")
    context = {
        "site": site,
        "equipment": equipment,
        "status": badge(EquipmentStatus, EQUIPMENT_BADGE, equipment.qualification_status),
        "form": form,
    }
    return render(request, "sites/equipment_form.html", context, status=status)


#
# Site audits
#


def _audit_or_404(site: Site, pk: int) -> SiteAudit:
    try:
        return site.audits.get(pk=pk)
    except SiteAudit.DoesNotExist as exc:
        raise Http404 from exc


def _audit_page(
    request: HttpRequest,
    site: Site,
    audit: SiteAudit,
    *,
    complete_form: AuditCompleteForm | None = None,
    finding_form: FindingForm | None = None,
    status: int = 200,
) -> HttpResponse:
    findings = [
        (f, badge(FindingGrade, FINDING_BADGE, f.grade)) for f in audit.findings.order_by("id")
    ]
    context = {
        "site": site,
        "audit": audit,
        "status": badge(SiteAuditStatus, AUDIT_STATUS_BADGE, audit.status),
        "is_planned": audit.status == SiteAuditStatus.PLANNED,
        "is_cancelled": audit.status == SiteAuditStatus.CANCELLED,
        "findings": findings,
        "can_manage": _can_manage(request.user),
        "complete_form": complete_form or AuditCompleteForm(prefix="complete"),
        "finding_form": finding_form or FindingForm(prefix="finding"),
    }
    return render(request, "sites/audit.html", context, status=status)


@login_required
@require_POST
def audit_add(request: HttpRequest, code: str) -> HttpResponse:
    site = _site_or_404(request, code)
    actor = _require_manager(request)
    form = AuditPlanForm(request.POST, prefix="audit")
    if not form.is_valid():
        return _detail_again(request, site, {"audit": form}, _invalid(request, "Not planned"))
    data = form.cleaned_data
    try:
        audit = services.site_audit_plan(
            actor=actor,
            site=site,
            title=data["title"],
            planned_for=data["planned_for"],
            lead_auditor=data["lead_auditor"],
            reason=data["reason"],
        )
    except ApplicationError as exc:
        return _detail_again(request, site, {"audit": form}, _refused(request, exc))
    messages.success(request, f"Audit planned for {audit.planned_for:%d %b %Y}: {audit.title}.")
    return redirect("sites:audit", site.code, audit.pk)


@login_required
def audit(request: HttpRequest, code: str, pk: int) -> HttpResponse:
    site = _site_or_404(request, code)
    return _audit_page(request, site, _audit_or_404(site, pk))


@login_required
@require_POST
def audit_complete(request: HttpRequest, code: str, pk: int) -> HttpResponse:
    site = _site_or_404(request, code)
    site_audit = _audit_or_404(site, pk)
    actor = _require_manager(request)
    form = AuditCompleteForm(request.POST, prefix="complete")
    if not form.is_valid():
        status = _invalid(request, "Not recorded")
        return _audit_page(request, site, site_audit, complete_form=form, status=status)
    try:
        services.site_audit_complete(
            actor=actor,
            audit=site_audit,
            done_on=form.cleaned_data["done_on"],
            summary=form.cleaned_data["summary"],
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        status = _refused(request, exc)
        return _audit_page(request, site, site_audit, complete_form=form, status=status)
    messages.success(request, f"Audit recorded as done: {site_audit.title}.")
    return redirect("sites:audit", site.code, site_audit.pk)


@login_required
@require_POST
def finding_add(request: HttpRequest, code: str, pk: int) -> HttpResponse:
    site = _site_or_404(request, code)
    site_audit = _audit_or_404(site, pk)
    actor = _require_manager(request)
    form = FindingForm(request.POST, prefix="finding")
    if not form.is_valid():
        status = _invalid(request, "Finding not recorded")
        return _audit_page(request, site, site_audit, finding_form=form, status=status)
    try:
        finding = services.audit_finding_add(
            actor=actor,
            audit=site_audit,
            grade=FindingGrade(form.cleaned_data["grade"]),
            description=form.cleaned_data["description"],
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        status = _refused(request, exc)
        return _audit_page(request, site, site_audit, finding_form=form, status=status)
    messages.success(request, f"{finding.get_grade_display()} finding recorded.")
    return redirect("sites:audit", site.code, site_audit.pk)


#
# The Control Site record and named QPs
#


def _require_control_reader(request: HttpRequest) -> None:
    """The Control Site record and the MHRA log are the licence holder's: QA, QPs, inspectors."""
    if not permissions.user_can(request.user, Capability.VIEW_ALL_SITES):
        raise PermissionDenied


def _control_page(
    request: HttpRequest, bound: dict[str, Any] | None = None, status: int = 200
) -> HttpResponse:
    bound = bound or {}
    control = control_site()
    qps = list(named_qps(control)) if control is not None else []
    initial = (
        {
            "name": control.name,
            "address": control.address,
            "licence_number": control.licence_number,
            "scope_poc": control.scope_poc,
            "scope_mm": control.scope_mm,
            "regulator_contacts": control.regulator_contacts,
        }
        if control is not None
        else {"scope_poc": True}
    )
    context = {
        "control": control,
        "qps": [(q, bound.get(f"qp-{q.pk}") or ReasonForm(prefix=f"qp-{q.pk}")) for q in qps],
        "can_manage": _can_manage(request.user),
        "form": bound.get("control") or ControlSiteForm(initial=initial, prefix="control"),
        "qp_form": bound.get("qp") or NamedQPForm(prefix="qp"),
        "open_form": next(iter(bound), ""),
    }
    return render(request, "sites/control_site.html", context, status=status)


@login_required
def control(request: HttpRequest) -> HttpResponse:
    _require_control_reader(request)
    return _control_page(request)


@login_required
@require_POST
def control_edit(request: HttpRequest) -> HttpResponse:
    _require_control_reader(request)
    actor = _require_manager(request)
    form = ControlSiteForm(request.POST, prefix="control")
    if not form.is_valid():
        return _control_page(request, {"control": form}, _invalid(request, "Not saved"))
    data = form.cleaned_data
    try:
        services.control_site_save(
            actor=actor,
            name=data["name"],
            address=data["address"],
            licence_number=data["licence_number"],
            scope_poc=data["scope_poc"],
            scope_mm=data["scope_mm"],
            regulator_contacts=data["regulator_contacts"],
            reason=data["reason"],
        )
    except ApplicationError as exc:
        return _control_page(request, {"control": form}, _refused(request, exc))
    messages.success(request, "The Control Site record is saved.")
    return redirect("sites:control")


@login_required
@require_POST
def qp_add(request: HttpRequest) -> HttpResponse:
    _require_control_reader(request)
    actor = _require_manager(request)
    form = NamedQPForm(request.POST, prefix="qp")
    if not form.is_valid():
        return _control_page(request, {"qp": form}, _invalid(request, "QP not named"))
    person: User = form.cleaned_data["user"]
    try:
        services.named_qp_add(actor=actor, user=person, reason=form.cleaned_data["reason"])
    except ApplicationError as exc:
        return _control_page(request, {"qp": form}, _refused(request, exc))
    messages.success(
        request,
        f"{person.printed_name} is named as QP on the licence. The MHRA must be told: see the "
        "MHRA log.",
    )
    return redirect("sites:control")


@login_required
@require_POST
def qp_remove(request: HttpRequest, pk: int) -> HttpResponse:
    _require_control_reader(request)
    actor = _require_manager(request)
    try:
        naming = NamedQP.objects.select_related("user").get(pk=pk, named_until__isnull=True)
    except NamedQP.DoesNotExist as exc:
        raise Http404 from exc
    key = f"qp-{naming.pk}"
    form = ReasonForm(request.POST, prefix=key)
    if not form.is_valid():
        return _control_page(request, {key: form}, _invalid(request, "QP not removed"))
    try:
        services.named_qp_remove(actor=actor, naming=naming, reason=form.cleaned_data["reason"])
    except ApplicationError as exc:
        return _control_page(request, {key: form}, _refused(request, exc))
    messages.success(
        request,
        f"{naming.user.printed_name} is no longer named on the licence. The MHRA must be told.",
    )
    return redirect("sites:control")


#
# The MHRA log
#


@dataclasses.dataclass(frozen=True)
class MhraRow:
    notification: RegulatoryNotification
    state: Badge
    overdue: bool


def _mhra_row(n: RegulatoryNotification, today: dt.date) -> MhraRow:
    if n.sent_on is not None:
        return MhraRow(n, Badge("Sent", "ok"), False)
    days = (n.due_on - today).days
    plural = "s" if abs(days) != 1 else ""
    if days < 0:
        return MhraRow(n, Badge(f"Overdue by {-days} day{plural}", "block"), True)
    if days == 0:
        return MhraRow(n, Badge("Due today", "warn"), False)
    return MhraRow(n, Badge(f"Due in {days} day{plural}", "info"), False)


MHRA_VIEWS = {
    "pending": "To send",
    "overdue": "Overdue",
    "sent": "Sent",
    "all": "All",
}


@login_required
def mhra_log(request: HttpRequest) -> HttpResponse:
    """What the MHRA must be told: a page of the log (a count and a page: fixed queries)."""
    _require_control_reader(request)
    today = timezone.localdate()
    show = request.GET.get("show", "pending")
    if show not in MHRA_VIEWS:
        show = "pending"
    qs = regulatory_notifications_visible_to(request.user)
    if show == "pending":
        qs = qs.filter(sent_on__isnull=True).order_by("due_on", "id")
    elif show == "overdue":
        qs = qs.filter(sent_on__isnull=True, due_on__lt=today).order_by("due_on", "id")
    elif show == "sent":
        qs = qs.filter(sent_on__isnull=False).order_by("-sent_on", "-id")
    else:
        qs = qs.order_by("-event_at", "-id")
    page = Paginator(qs, MHRA_PAGE_SIZE).get_page(request.GET.get("page"))
    overdue = regulatory_notifications_visible_to(request.user).filter(
        sent_on__isnull=True, due_on__lt=today
    )
    context = {
        "rows": [_mhra_row(n, today) for n in page.object_list],
        "page": page,
        "show": show,
        "views": MHRA_VIEWS,
        "overdue_count": overdue.count(),
        "can_manage": _can_manage(request.user),
    }
    return render(request, "sites/mhra_log.html", context)


@login_required
def notification_sent(request: HttpRequest, pk: int) -> HttpResponse:
    """Record that a notification went to the MHRA: when, and the MHRA's reference."""
    _require_control_reader(request)
    actor = _require_manager(request)
    try:
        notification = regulatory_notifications_visible_to(actor).get(pk=pk)
    except RegulatoryNotification.DoesNotExist as exc:
        raise Http404 from exc
    form = NotificationSentForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.regulatory_notification_mark_sent(
                    actor=actor,
                    notification=notification,
                    sent_on=form.cleaned_data["sent_on"],
                    reference=form.cleaned_data["reference"],
                    reason=form.cleaned_data["reason"],
                )
            except ApplicationError as exc:
                status = _refused(request, exc)
                notification.refresh_from_db()
            else:
                messages.success(request, f"Recorded as sent: {notification.subject}.")
                return redirect("sites:notifications")
        else:
            status = _invalid(request, "Not recorded as sent")
    context = {
        "row": _mhra_row(notification, timezone.localdate()),
        "n": notification,
        "form": form,
    }
    return render(request, "sites/mhra_sent.html", context, status=status)


#
# The oversight dashboard (SO-07; issue 8 §6)
#


@login_required
@require_GET
def oversight(request: HttpRequest) -> HttpResponse:
    """Every site this person may see on one page, with the columns the apps register (status,
    batches, certification rate, deviations, CAPAs, comparability, training, last audit),
    flagged sites marked and, by default, first. Read-only for everyone. htmx asks for this same
    URL every REFRESH_SECONDS while the tab is shown and gets the table alone; without
    JavaScript it is a normal page. A fixed number of queries whatever the number of sites."""
    columns = dashboard.oversight_columns()
    query = OversightQuery.from_params(request.GET, columns)
    table = oversight_table(user=request.user, query=query)
    path = reverse("sites:oversight")
    site_url = dashboard.link_maker("sites:detail")

    def url(**changes: Any) -> str:
        params = query.params(**changes)
        return path + (f"?{urlencode(params)}" if params else "")

    headers = []
    for column in columns:
        current = query.sort == column.name
        headers.append(
            {
                "column": column,
                "url": url(sort=column.name, descending=current and not query.descending)
                if column.sortable
                else "",
                "aria_sort": ("descending" if query.descending else "ascending")
                if current
                else "none",
            }
        )
    context = {
        "table": table,
        "headers": headers,
        "rows": [
            {
                "row": row,
                "url": site_url(row.site.code),
                "cells": [
                    (column.title, cell_html(cell))
                    for column, cell in zip(columns, row.cells, strict=True)
                ],
            }
            for row in table.rows
        ],
        "self_url": url(),
        "code_url": url(sort="", descending=False),
        "sorted_by_code": not query.sort,
        "status_choices": status_choices(),
        "flagged_choices": list(FLAGGED_CHOICES.items()),
        "refresh_seconds": REFRESH_SECONDS,
    }
    if _is_htmx_partial(request):
        return render(request, "sites/partials/_oversight_table.html", context)
    return render(request, "sites/oversight.html", context)
