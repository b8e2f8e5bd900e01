"""Reads for training: who needs what, who holds what, and whether a person is qualified.

`user_is_qualified(user, site, role, at=None)` is the one answer to "may this person do this
role's GMP work at this site at that moment?" (TR-02, TR-04, TR-07). It names every missing or
expired item. The training matrix, each site's compliance figure and the batch release gate read
the same evaluation, `_evaluate`, so the page and the refusal never disagree. Every read here
runs in a fixed number of queries however many people, items or records there are.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.formats import date_format

from controlsite.accounts import permissions
from controlsite.accounts.models import RoleGrant, User
from controlsite.accounts.roles import Capability, Role
from controlsite.accounts.scope import token_site_limit
from controlsite.errors import ConflictError
from controlsite.files import stored_sha256
from sites.choices import SiteRole
from sites.models import Site
from sites.selectors import live_memberships, sites_visible_to
from training.choices import (
    QUALIFYING_STATES,
    SITE_HELD_ROLES,
    AssessmentResult,
    AssignmentStatus,
    CellState,
    CurriculumRole,
    ItemKind,
    VersionStatus,
)
from training.models import (
    Assignment,
    Curriculum,
    Procedure,
    ProcedureVersion,
    Requirement,
    TrainingItem,
    TrainingRecord,
)


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """The same day `months` later (the last day of a shorter month)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def due_soon_days() -> int:
    return int(getattr(settings, "TRAINING_DUE_SOON_DAYS", 30))


def _date(moment: dt.datetime | dt.date) -> str:
    if isinstance(moment, dt.datetime):
        moment = timezone.localtime(moment).date()
    return date_format(moment, "j M Y")


#
# Visibility
#


def manages_training(user: Any) -> bool:
    return permissions.user_can(user, Capability.MANAGE_TRAINING)


def sees_all_training(user: Any) -> bool:
    """QA, trainers, QPs and inspectors read every person's training (TR-06)."""
    return manages_training(user) or permissions.user_can(user, Capability.VIEW_ALL_SITES)


def led_site_ids(user: Any) -> QuerySet[Any]:
    return live_memberships().filter(user=user, role=SiteRole.SITE_LEAD).values("site_id")


def matrix_sites_visible_to(user: Any) -> QuerySet[Site]:
    """Sites whose training matrix this person may read: every site for those who see all
    training, the sites they lead for a site lead."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Site.objects.none()
    if sees_all_training(user):
        return sites_visible_to(user) if not manages_training(user) else Site.objects.all()
    return sites_visible_to(user).filter(pk__in=led_site_ids(user))


def _people_q(user: Any, field: str) -> Q:
    """Rows about people this person may read: everyone's for those who see all training, their
    own and the people working at the sites they lead for a site lead. A token limited to some
    sites narrows either to the people at those sites (and the person themselves)."""
    limit = token_site_limit(user)
    if sees_all_training(user):
        if limit is None:
            return Q()
        sites = Site.objects.filter(code__in=limit)
    else:
        sites = sites_visible_to(user).filter(pk__in=led_site_ids(user))
    members = live_memberships().filter(site__in=sites).values("user_id")
    return Q(**{field: user.pk}) | Q(**{f"{field}__in": members})


def records_visible_to(user: Any) -> QuerySet[TrainingRecord]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return TrainingRecord.objects.none()
    qs = TrainingRecord.objects.select_related(
        "user", "item", "procedure_version__procedure", "trainer", "signature"
    )
    return qs.filter(_people_q(user, "user_id"))


def assignments_visible_to(user: Any) -> QuerySet[Assignment]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Assignment.objects.none()
    qs = Assignment.objects.select_related(
        "user", "item", "procedure_version__procedure", "site", "record"
    )
    return qs.filter(_people_q(user, "user_id"))


def curricula_visible_to(user: Any) -> QuerySet[Curriculum]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Curriculum.objects.none()
    qs = Curriculum.objects.select_related("site")
    if manages_training(user):
        return qs
    return qs.filter(Q(site__isnull=True) | Q(site__in=sites_visible_to(user)))


def procedures_visible_to(user: Any) -> QuerySet[Procedure]:
    """The procedure register is read by everyone signed in: staff must find their SOPs."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Procedure.objects.none()
    return Procedure.objects.all()


def items_visible_to(user: Any) -> QuerySet[TrainingItem]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return TrainingItem.objects.none()
    return TrainingItem.objects.select_related("procedure")


def version_in_force(procedure: Procedure) -> ProcedureVersion | None:
    return procedure.versions.filter(status=VersionStatus.EFFECTIVE).first()


def version_file_checked(version: ProcedureVersion) -> str:
    """The stored file's name, once its bytes are checked against the SHA-256 QA signed: a
    file that changed or went missing is never handed out (409; DI-07)."""
    name = version.file.name or ""
    try:
        digest = stored_sha256(name, version.file.storage) if name else ""
    except OSError as exc:
        raise ConflictError(
            f"The file of {version} cannot be read; tell Control Site QA.", code="file_missing"
        ) from exc
    if digest != version.file_sha256:
        raise ConflictError(
            f"The stored file of {version} does not match its SHA-256; tell Control Site QA.",
            code="file_mismatch",
        )
    return name


def accountability_item() -> TrainingItem | None:
    return TrainingItem.objects.filter(kind=ItemKind.ACCOUNTABILITY, active=True).first()


#
# Evaluation: one item for one person at one moment
#


@dataclasses.dataclass(frozen=True, slots=True)
class RecordFact:
    """What an evaluation needs of a training record: read as plain values, not model
    instances, because a site's matrix reads tens of thousands of them."""

    pk: int
    user_id: int
    item_id: int
    version: int | None  # the procedure version read, for an SOP
    completed_at: dt.datetime
    expires_at: dt.datetime | None
    result: str

    @property
    def passed(self) -> bool:
        return self.result != AssessmentResult.NOT_YET_COMPETENT


@dataclasses.dataclass(frozen=True, slots=True)
class AssignmentFact:
    """An open assignment, as the evaluation reads it."""

    pk: int
    user_id: int
    item_id: int
    due_on: dt.date


@dataclasses.dataclass(slots=True)
class Cell:
    """Whether one person holds one item at one moment, and why."""

    item: TrainingItem
    state: CellState
    detail: str = ""
    record: RecordFact | None = None
    assignment: AssignmentFact | None = None

    @property
    def qualifies(self) -> bool:
        return self.state in QUALIFYING_STATES or self.state == CellState.NOT_REQUIRED


@dataclasses.dataclass(frozen=True)
class Gap:
    """An item that stops a person being qualified."""

    item: TrainingItem
    state: CellState
    detail: str

    def __str__(self) -> str:
        return f"{self.item.code} {self.item.title} ({self.detail})"


@dataclasses.dataclass(frozen=True)
class Qualification:
    """The verdict of `user_is_qualified`: truthy when nothing is missing or expired."""

    user: Any
    site: Site | None
    role: str
    at: dt.datetime
    gaps: tuple[Gap, ...]

    def __bool__(self) -> bool:
        return not self.gaps

    @property
    def items(self) -> list[str]:
        return [str(gap) for gap in self.gaps]

    def message(self) -> str:
        if not self.gaps:
            return ""
        who = getattr(self.user, "printed_name", str(self.user))
        where = f" at {self.site.code}" if self.site is not None else ""
        role = Role(self.role).label.lower() if self.role in Role.values else self.role
        return f"{who} is not qualified as {role}{where}: " + "; ".join(self.items) + "."


@dataclasses.dataclass
class _Facts:
    """What one evaluation reads from the database, in a fixed number of queries."""

    accountability: TrainingItem | None
    requirements: list[Requirement]
    versions: dict[int, list[ProcedureVersion]]  # procedure id -> versions with a time in force
    upcoming: dict[int, ProcedureVersion]  # procedure id -> issued, not yet in force
    records: dict[tuple[int, int], list[RecordFact]]  # (user, item) -> newest first
    assignments: dict[tuple[int, int], AssignmentFact]  # (user, item) -> open assignment
    today: dt.date = dataclasses.field(default_factory=timezone.localdate)
    soon: dt.timedelta = dataclasses.field(
        default_factory=lambda: dt.timedelta(days=due_soon_days())
    )
    in_force: dict[tuple[int, dt.datetime], ProcedureVersion | None] = dataclasses.field(
        default_factory=dict
    )


def _load(
    *,
    user_ids: Iterable[int],
    roles: Iterable[str],
    site_ids: Iterable[int | None],
    until: dt.datetime,
    with_assignments: bool = False,
    extra_items: Iterable[TrainingItem] = (),
) -> _Facts:
    user_ids = sorted(set(user_ids))
    roles = sorted(set(roles))
    concrete_sites = sorted({s for s in site_ids if s is not None})
    accountability = accountability_item()
    requirements = (
        list(
            Requirement.objects.filter(
                Q(curriculum__site__isnull=True) | Q(curriculum__site_id__in=concrete_sites),
                curriculum__role__in=roles,
                created_at__lte=until,
            )
            .select_related("item", "curriculum")
            .order_by("item__code", "id")
        )
        if roles
        else []
    )
    items = {r.item_id: r.item for r in requirements}
    if accountability is not None:
        items[accountability.pk] = accountability
    items.update({item.pk: item for item in extra_items})
    procedure_ids = [i.procedure_id for i in items.values() if i.procedure_id]
    versions: dict[int, list[ProcedureVersion]] = defaultdict(list)
    upcoming: dict[int, ProcedureVersion] = {}
    for version in ProcedureVersion.objects.filter(procedure_id__in=procedure_ids).order_by(
        "procedure_id", "number"
    ):
        if version.effective_at is not None:
            versions[version.procedure_id].append(version)
        else:
            upcoming[version.procedure_id] = version
    records: dict[tuple[int, int], list[RecordFact]] = defaultdict(list)
    for row in (
        TrainingRecord.objects.filter(user_id__in=user_ids, item_id__in=list(items))
        .order_by("-completed_at", "-id")
        .values_list(
            "pk",
            "user_id",
            "item_id",
            "procedure_version__number",
            "completed_at",
            "expires_at",
            "result",
        )
    ):
        fact = RecordFact(*row)
        records[(fact.user_id, fact.item_id)].append(fact)
    assignments: dict[tuple[int, int], AssignmentFact] = {}
    if with_assignments:
        for row_a in Assignment.objects.filter(
            user_id__in=user_ids, item_id__in=list(items), status=AssignmentStatus.OPEN
        ).values_list("pk", "user_id", "item_id", "due_on"):
            fact_a = AssignmentFact(*row_a)
            assignments[(fact_a.user_id, fact_a.item_id)] = fact_a
    return _Facts(accountability, requirements, versions, upcoming, records, assignments)


def _required_items(
    facts: _Facts, *, roles: Iterable[str], site_id: int | None, at: dt.datetime
) -> dict[int, TrainingItem]:
    """The items these roles need at this site at `at`, the accountability item first."""
    wanted = set(roles)
    items: dict[int, TrainingItem] = {}
    if facts.accountability is not None and wanted:
        items[facts.accountability.pk] = facts.accountability
    for req in facts.requirements:
        curriculum = req.curriculum
        if curriculum.role not in wanted:
            continue
        if curriculum.site_id is not None and curriculum.site_id != site_id:
            continue
        if req.created_at > at or (req.removed_at is not None and req.removed_at <= at):
            continue
        items.setdefault(req.item_id, req.item)
    return items


def _in_force(facts: _Facts, procedure_id: int, at: dt.datetime) -> ProcedureVersion | None:
    key = (procedure_id, at)
    if key not in facts.in_force:
        found = None
        for version in reversed(facts.versions.get(procedure_id, [])):
            assert version.effective_at is not None  # noqa: S101  (only versions in force are kept)
            if version.effective_at <= at and (
                version.superseded_at is None or version.superseded_at > at
            ):
                found = version
                break
        facts.in_force[key] = found
    return facts.in_force[key]


def _evaluate(
    facts: _Facts, *, user_id: int, item: TrainingItem, at: dt.datetime, now: bool
) -> Cell:
    """The state of one item for one person at `at`. `now` adds what only the present knows:
    open assignments (overdue) and versions coming into force (due soon). Runs once per matrix
    cell, so it walks the person's records for the item once, newest first."""
    key = (user_id, item.pk)
    assignment = facts.assignments.get(key) if now else None
    required_version: ProcedureVersion | None = None
    upcoming: ProcedureVersion | None = None
    floor: int | None = None
    if item.procedure_id:
        required_version = _in_force(facts, item.procedure_id, at)
        upcoming = facts.upcoming.get(item.procedure_id) if now else None
        needed = required_version or upcoming
        if needed is None:
            return Cell(item, CellState.NOT_REQUIRED, "no version issued yet")
        floor = needed.number
    valid = expired = latest = older = None
    for record in facts.records.get(key, ()):
        if record.completed_at > at:
            continue
        if latest is None:
            latest = record
        if record.result == AssessmentResult.NOT_YET_COMPETENT:
            continue
        if older is None and record.version is not None:
            older = record
        if floor is not None and (record.version is None or record.version < floor):
            continue
        if record.expires_at is None or record.expires_at > at:
            valid = record
            break
        if expired is None:
            expired = record
    if valid is not None:
        if valid.expires_at is not None and valid.expires_at <= at + facts.soon:
            return Cell(
                item, CellState.DUE_SOON, f"expires {_date(valid.expires_at)}", valid, assignment
            )
        if (
            upcoming is not None
            and required_version is not None
            and (valid.version is None or valid.version < upcoming.number)
        ):
            return Cell(
                item,
                CellState.DUE_SOON,
                f"v{upcoming.number} in force from {_date(upcoming.effective_on)}",
                valid,
                assignment,
            )
        return Cell(item, CellState.CURRENT, "", valid, assignment)
    if item.procedure_id and required_version is None and upcoming is not None:
        # Only an upcoming version exists: not needed yet, but due.
        return Cell(
            item,
            CellState.DUE_SOON,
            f"v{upcoming.number} in force from {_date(upcoming.effective_on)}",
            None,
            assignment,
        )
    if expired is not None:
        assert expired.expires_at is not None  # noqa: S101  (that is what made it expired)
        return Cell(
            item, CellState.OVERDUE, f"expired {_date(expired.expires_at)}", expired, assignment
        )
    if older is not None and required_version is not None:
        detail = f"read v{older.version}; v{required_version.number} in force"
    elif latest is not None and latest.result == AssessmentResult.NOT_YET_COMPETENT:
        detail = f"not yet competent ({_date(latest.completed_at)})"
    else:
        detail = "never completed"
    if assignment is not None and assignment.due_on < facts.today:
        return Cell(
            item, CellState.OVERDUE, f"{detail}, due {_date(assignment.due_on)}", None, assignment
        )
    return Cell(item, CellState.MISSING, detail, None, assignment)


#
# Qualification (TR-02)
#


@dataclasses.dataclass(frozen=True)
class QualificationQuery:
    user: Any
    site: Site | None
    role: str
    at: dt.datetime | None = None


def qualifications(queries: Sequence[QualificationQuery]) -> list[Qualification]:
    """`user_is_qualified` for many people and moments at once, in a fixed number of queries
    (the batch release gate asks once per signature on the record)."""
    if not queries:
        return []
    now = timezone.now()
    moments = [q.at or now for q in queries]
    facts = _load(
        user_ids=[q.user.pk for q in queries],
        roles=[q.role for q in queries],
        site_ids=[q.site.pk if q.site is not None else None for q in queries],
        until=max(moments),
    )
    verdicts = []
    for query, at in zip(queries, moments, strict=True):
        site_id = query.site.pk if query.site is not None else None
        gaps = []
        for item in _required_items(facts, roles=[query.role], site_id=site_id, at=at).values():
            cell = _evaluate(facts, user_id=query.user.pk, item=item, at=at, now=False)
            if not cell.qualifies:
                gaps.append(Gap(item, cell.state, cell.detail))
        verdicts.append(Qualification(query.user, query.site, query.role, at, tuple(gaps)))
    return verdicts


def user_is_qualified(
    user: Any, site: Site | None, role: str, at: dt.datetime | None = None
) -> Qualification:
    """Whether `user` holds, at `at` (default now), every item their `role` needs at `site`
    — each current and on the version in force then — and the accountability item. The verdict
    names what is missing or expired (TR-02, TR-04, TR-07)."""
    return qualifications([QualificationQuery(user, site, role, at)])[0]


def accountability_gap(user: Any, at: dt.datetime | None = None) -> Gap | None:
    """What stops this person signing anything at all: the accountability item, not held
    (21 CFR 11.10(j); TR-07). None when they hold it, or when no such item is defined. Asked
    before every signature, so the usual answer (they hold it) is one query."""
    moment = at or timezone.now()
    held = (
        TrainingRecord.objects.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=moment),
            user_id=user.pk,
            item__kind=ItemKind.ACCOUNTABILITY,
            item__active=True,
            completed_at__lte=moment,
        )
        .exclude(result=AssessmentResult.NOT_YET_COMPETENT)
        .exists()
    )
    if held:
        return None
    facts = _load(user_ids=[user.pk], roles=[], site_ids=[], until=moment)
    item = facts.accountability
    if item is None:
        return None
    cell = _evaluate(facts, user_id=user.pk, item=item, at=moment, now=False)
    return None if cell.qualifies else Gap(item, cell.state, cell.detail)


#
# Who needs what (assignments) and the training matrix (TR-05, TR-06)
#


def roles_of(user: Any) -> dict[str, set[int | None]]:
    """Each curriculum role this person holds now, with the sites it is held at (None: the
    Control Site, for roles held everywhere)."""
    held: dict[str, set[int | None]] = defaultdict(set)
    for site_id, role in live_memberships().filter(user=user).values_list("site_id", "role"):
        held[role].add(site_id)
    for role in permissions.user_roles(user):
        if role.value in CurriculumRole.values and role.value not in SITE_HELD_ROLES:
            held[role.value].add(None)
    return held


def required_now(user: Any) -> dict[int, tuple[TrainingItem, int | None]]:
    """Every item this person needs now across their roles and sites, with a site that asks
    for it (for escalation), accountability included when they may sign."""
    return needs_now(user)[0]


def needs_now(
    user: Any,
) -> tuple[dict[int, tuple[TrainingItem, int | None]], dict[int, bool]]:
    """`required_now`, and for each needed item whether the person holds it now (current or
    due soon), from one read of the database."""
    held_roles = roles_of(user)
    now = timezone.now()
    sites = {s for ids in held_roles.values() for s in ids}
    facts = _load(user_ids=[user.pk], roles=list(held_roles), site_ids=sites, until=now)
    needed: dict[int, tuple[TrainingItem, int | None]] = {}
    for role, site_ids in held_roles.items():
        for site_id in sorted(site_ids, key=lambda s: (s is None, s or 0)):
            for pk, item in _required_items(facts, roles=[role], site_id=site_id, at=now).items():
                if pk not in needed or (needed[pk][1] is None and site_id is not None):
                    needed[pk] = (item, site_id)
    if facts.accountability is not None:
        if permissions.user_can(user, Capability.SIGN):
            needed.setdefault(facts.accountability.pk, (facts.accountability, None))
        else:
            needed.pop(facts.accountability.pk, None)
    holds = {
        pk: _evaluate(facts, user_id=user.pk, item=item, at=now, now=False).state
        in QUALIFYING_STATES
        for pk, (item, _) in needed.items()
    }
    return needed, holds


@dataclasses.dataclass(frozen=True)
class MatrixRow:
    user: Any
    roles: tuple[str, ...]
    cells: tuple[Cell, ...]

    @property
    def required(self) -> int:
        return sum(1 for c in self.cells if c.state != CellState.NOT_REQUIRED)

    @property
    def held(self) -> int:
        return sum(1 for c in self.cells if c.state in QUALIFYING_STATES)


@dataclasses.dataclass(frozen=True)
class Matrix:
    site: Site
    items: tuple[TrainingItem, ...]
    rows: tuple[MatrixRow, ...]
    at: dt.datetime

    @property
    def required(self) -> int:
        return sum(r.required for r in self.rows)

    @property
    def held(self) -> int:
        return sum(r.held for r in self.rows)

    @property
    def compliance(self) -> int:
        return compliance_pct(self.held, self.required)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CellState.values, 0)
        for row in self.rows:
            for cell in row.cells:
                counts[cell.state] += 1
        return counts


def compliance_pct(held: int, required: int) -> int:
    """Whole percent of required items held; 100 when nothing is required. Rounded down, so
    99.6 % never shows as a clean 100 %."""
    return 100 if required == 0 else (100 * held) // required


def _site_people(site_ids: Sequence[int]) -> dict[int, dict[int, set[str]]]:
    """site -> user -> curriculum roles held there (site roles, plus their Control Site roles)."""
    people: dict[int, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    rows = list(
        live_memberships()
        .filter(site_id__in=site_ids, user__is_active=True)
        .values_list("site_id", "user_id", "role")
    )
    for site_id, user_id, role in rows:
        people[site_id][user_id].add(role)
    user_ids = {user_id for _, user_id, _ in rows}
    for user_id, role in RoleGrant.objects.filter(
        permissions.live_grants_q(),
        user_id__in=user_ids,
        role__in=[r for r in CurriculumRole.values if r not in SITE_HELD_ROLES],
    ).values_list("user_id", "role"):
        for site_people in people.values():
            if user_id in site_people:
                site_people[user_id].add(role)
    return people


def site_matrix(site: Site, *, at: dt.datetime | None = None) -> Matrix:
    """Everyone working at the site against every item any of them needs there (TR-05)."""
    at = at or timezone.now()
    people = _site_people([site.pk]).get(site.pk, {})
    roles = {role for held in people.values() for role in held}
    facts = _load(
        user_ids=list(people), roles=roles, site_ids=[site.pk], until=at, with_assignments=True
    )
    users = {
        u.pk: u for u in User.objects.filter(pk__in=list(people)).order_by("last_name", "username")
    }
    required = {
        user_id: _required_items(facts, roles=held, site_id=site.pk, at=at)
        for user_id, held in people.items()
    }
    columns: dict[int, TrainingItem] = {}
    for needed in required.values():
        columns.update(needed)
    items = sorted(columns.values(), key=_column_order)
    rows = []
    for user in users.values():
        needed = required[user.pk]
        cells = tuple(
            _evaluate(facts, user_id=user.pk, item=item, at=at, now=True)
            if item.pk in needed
            else Cell(item, CellState.NOT_REQUIRED)
            for item in items
        )
        rows.append(MatrixRow(user, tuple(sorted(people[user.pk])), cells))
    return Matrix(site, tuple(items), tuple(rows), at)


_KIND_ORDER = {
    ItemKind.ACCOUNTABILITY: 0,
    ItemKind.INDUCTION: 1,
    ItemKind.REFRESHER: 2,
    ItemKind.SOP: 3,
    ItemKind.ASSESSMENT: 4,
}


def _column_order(item: TrainingItem) -> tuple[int, str]:
    return (_KIND_ORDER.get(ItemKind(item.kind), 9), item.code)


@dataclasses.dataclass(frozen=True)
class Compliance:
    held: int
    required: int
    overdue: int

    @property
    def pct(self) -> int:
        return compliance_pct(self.held, self.required)


def site_compliance(site_ids: Sequence[int]) -> dict[int, Compliance]:
    """Each site's share of required items held now, in a fixed number of queries (TR-06)."""
    now = timezone.now()
    people = _site_people(site_ids)
    roles = {role for site in people.values() for held in site.values() for role in held}
    facts = _load(
        user_ids={u for site in people.values() for u in site},
        roles=roles,
        site_ids=site_ids,
        until=now,
        with_assignments=True,
    )
    result = {}
    for site_id in site_ids:
        held = required = overdue = 0
        for user_id, user_roles in people.get(site_id, {}).items():
            for item in _required_items(facts, roles=user_roles, site_id=site_id, at=now).values():
                cell = _evaluate(facts, user_id=user_id, item=item, at=now, now=True)
                if cell.state == CellState.NOT_REQUIRED:
                    continue
                required += 1
                held += cell.state in QUALIFYING_STATES
                overdue += cell.state == CellState.OVERDUE
        result[site_id] = Compliance(held, required, overdue)
    return result


def todo_for(user: Any) -> list[Assignment]:
    """A person's open training, soonest due first."""
    return list(
        Assignment.objects.filter(user=user, status=AssignmentStatus.OPEN)
        .select_related("item", "procedure_version__procedure", "site")
        .order_by("due_on", "id")
    )


def people_holding_role(role: str, site: Site | None) -> QuerySet[User]:
    """Active people who hold a curriculum role: at `site` for a site role (at any site when
    `site` is None), everywhere for a Control Site role."""
    if role in SITE_HELD_ROLES:
        members = live_memberships().filter(role=role)
        if site is not None:
            members = members.filter(site=site)
        return User.objects.filter(is_active=True, pk__in=members.values("user_id"))
    grants = RoleGrant.objects.filter(permissions.live_grants_q(), role=role).values("user_id")
    return User.objects.filter(is_active=True, pk__in=grants)
