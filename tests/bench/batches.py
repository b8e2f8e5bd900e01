"""Benchmarks of batches at scale (issue 5 "Speed"; design §8), for `tests.bench.run`.

  QP queue       GET `batches:queue` (first page) as a QP, with `--batch-sites` sites and
                 `--batches` batches of which `--awaiting` await certification, against the home
                 page in the same run; its queries counted at a tenth of the size and at full
                 size (FIXED or GROWS).
  certification  `services.batch_certify()` (gates, lock, decision, signature with argon2
                 password and TOTP, audit event) against the argon2 password check alone; the
                 note gives certification minus the hash (aim < 50 ms).
  ingestion      results with their full audit trail (row lock, history row, audit event on
                 the hash chain) through `services.result_record()` (one per call) and
                 `services.results_record()` (a batch's ten-result panel per call), and the
                 same through the API (`POST …/results/` and `…/results/bulk/`, bearer token,
                 idempotency key), against plain ORM inserts of `TestResult` rows, one
                 transaction each; as rates and ratios (aim: at least half the plain rate).

The fixture is not app code: the sites, their product links and the batches are bulk-loaded
(COPY on PostgreSQL, `bulk_create` on SQLite; no history rows). The product, its master file,
the template and every measured batch go through the real services.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import TYPE_CHECKING, Any
from unittest import mock

if TYPE_CHECKING:
    from batches.models import BatchTemplate
    from controlsite.accounts.models import User
    from controlsite.signatures.services import SignatureCredentials
    from sites.models import Site

from tests.bench.sites import QueryCount, _analyze, _captured, _get, _median_ms

SPECS = 10  # CQAs on the bench template: ten results per batch for the ingestion case
AIM_QUEUE_MS = 50.0
AIM_CERTIFY_NET_MS = 50.0


def _people() -> tuple[User, User, User]:
    from tests.personas import make_persona

    return (
        make_persona("qa", username="bench-b-qa"),
        make_persona("qp", username="bench-b-qp"),
        make_persona("operator", username="bench-b-op"),
    )


def _sites(qa: User, count: int) -> list[Site]:
    from django.utils import timezone

    from sites.choices import SiteKind, SiteStatus
    from sites.models import Site

    now = timezone.now()
    return Site.objects.bulk_create(
        [
            Site(
                code=f"B{i:03d}",
                name=f"Bench batch site {i}",
                kind=SiteKind.POC_HOSPITAL,
                host_organisation="Bench NHS Trust",
                address=f"{i} Hospital Road",
                status=SiteStatus.ACTIVE,
                status_changed_at=now,
                created_by=qa,
            )
            for i in range(count)
        ],
        batch_size=500,
    )


def _template(qa: User, product: Any) -> BatchTemplate:
    from batches import services
    from tests.masterfile.helpers import signing

    template = services.template_create(actor=qa, product=product, title="Bench MBR", reason="b")
    services.template_step_add(
        actor=qa,
        template=template,
        title="Make",
        instruction="Make the batch.",
        parameters=[{"key": "temp", "name": "Temperature", "unit": "°C", "low": 36, "high": 38}],
        reason="bench",
    )
    for i in range(SPECS):
        services.template_specification_add(
            actor=qa,
            template=template,
            key=f"cqa-{i}",
            name=f"CQA {i}",
            unit="%",
            low=50,
            reason="bench",
        )
    return services.template_approve(
        actor=qa, template=template, credentials=signing(qa), reason="bench"
    )


def _network(sites: int) -> tuple[User, User, User, list[Site], BatchTemplate]:
    from controlsite.audit.context import audit_context
    from masterfile.choices import ProductSiteRole
    from masterfile.models import ProductSite
    from sites import services as site_services
    from sites.choices import SiteRole
    from tests.masterfile.helpers import make_effective_version, make_product

    qa, qp, operator = _people()
    with audit_context(reason="bench"):
        every = _sites(qa, sites)
        product = make_product(qa, every[0], "BENCH-B", shelf_life_minutes=24 * 60)
        ProductSite.objects.bulk_create(
            [
                ProductSite(
                    product=product, site=s, role=ProductSiteRole.MANUFACTURING, created_by=qa
                )
                for s in every[1:]
            ]
        )
        make_effective_version(qa, qp, product)
        template = _template(qa, product)
        site_services.membership_add(
            actor=qa, site=every[0], user=operator, role=SiteRole.SITE_OPERATOR, reason="bench"
        )
    return qa, qp, operator, every, template


def _seed(
    template: BatchTemplate, sites: list[Site], total: int, awaiting: int, start: int
) -> None:
    """Bulk-load batches `start`…`total - 1`: the first `awaiting` of all await certification,
    the rest spread over in progress, certified, under concession and rejected."""
    import datetime as dt

    from django.db import connection
    from django.utils import timezone

    from batches.choices import BatchStatus
    from batches.models import Batch

    now = timezone.now()
    decided = [
        BatchStatus.CERTIFIED,
        BatchStatus.CERTIFIED,
        BatchStatus.CERTIFIED,
        BatchStatus.REJECTED,
        BatchStatus.CERTIFIED_UNDER_CONCESSION,
        BatchStatus.IN_PROGRESS,
    ]
    day0 = dt.date(2020, 1, 1)

    def row(i: int) -> tuple[Any, ...]:
        site = sites[i % len(sites)]
        day = day0 + dt.timedelta(days=i // len(sites) // 900)
        seq = (i // len(sites)) % 900 + 1
        status = BatchStatus.COMPLETED if i < awaiting else decided[i % len(decided)]
        # Made on its own day, as in years of production; what awaits a QP was made today.
        created = now if i < awaiting else dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
        completed = None if status == BatchStatus.IN_PROGRESS else now - dt.timedelta(minutes=30)
        expires = None
        if status == BatchStatus.COMPLETED:
            expires = now + dt.timedelta(minutes=5 + (i * 7919) % 1440)
        elif completed is not None:
            expires = completed + dt.timedelta(hours=2)
        return (
            f"{site.code}-{day:%y%m%d}-{seq:03d}-{i}",
            site.pk,
            template.product_id,
            template.pk,
            template.master_file_version_id,
            f"PT-{i:08d}",
            status,
            completed,
            expires,
            now if status in (BatchStatus.CERTIFIED, BatchStatus.REJECTED) else None,
            created,
            created,
        )

    columns = (
        "number, site_id, product_id, template_id, master_file_version_id, coi_reference, "
        "status, completed_at, expires_at, decided_at, created_at, updated_at"
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg 3
            with raw.copy(f"COPY {Batch._meta.db_table} ({columns}) FROM STDIN") as copy:
                for i in range(start, total):
                    copy.write_row(row(i))
        return
    fields = [c.strip() for c in columns.split(",")]
    chunk = 5000
    for lo in range(start, total, chunk):
        Batch.objects.bulk_create(
            [
                Batch(**dict(zip(fields, row(i), strict=True)))
                for i in range(lo, min(total, lo + chunk))
            ]
        )


def _qp_signer(qp: User, count: int) -> list[SignatureCredentials]:
    """`count` fresh signatures for the bench QP: the TOTP codes of successive past steps (each
    step is accepted once), with the device's tolerance widened to reach them."""
    from django_otp.oath import hotp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from controlsite.signatures.services import SignatureCredentials
    from tests.personas import PASSWORD

    device = TOTPDevice.objects.get(user=qp, confirmed=True)
    now = int((time.time() - device.t0) // device.step)
    first = max(device.last_t + 1, now - count - 2)
    device.tolerance = count + 5
    device.save(update_fields=["tolerance"])
    return [
        SignatureCredentials(
            username=qp.get_username(),
            password=PASSWORD,
            otp=f"{hotp(device.bin_key, step, digits=device.digits):0{device.digits}d}",
        )
        for step in range(first, first + count)
    ]


def _ready(operator: User, site: Site, template: BatchTemplate, coi: str) -> Any:
    from batches import services
    from tests.masterfile.helpers import signing

    batch = services.batch_start(
        actor=operator, site=site, product=template.product, coi_reference=coi
    )
    services.step_record(
        actor=operator,
        batch=batch,
        position=1,
        values={"temp": "37"},
        credentials=signing(operator),
    )
    for i in range(SPECS):
        services.result_record(
            actor=operator, batch=batch, specification_key=f"cqa-{i}", value="80"
        )
    batch.refresh_from_db()
    return batch


@dataclasses.dataclass(frozen=True)
class Ingestion:
    plain_ms: float
    paths: list[tuple[str, float]]

    def notes(self, results: int) -> list[str]:
        plain_rate = results / (self.plain_ms / 1000)
        lines = [f"  ingestion            {plain_rate:7.0f} results/s plain ORM inserts (baseline)"]
        for label, ms in self.paths:
            rate = results / (ms / 1000)
            lines.append(
                f"    {label:<40} {rate:7.0f} results/s = {rate / plain_rate:.2f} of the plain "
                "rate (aim ≥ 0.5)"
            )
        return lines


def _ingestion(operator: User, site: Site, template: BatchTemplate, results: int) -> Ingestion:
    """`results` results down each path, every path on batches of its own: plain ORM inserts
    of `TestResult` rows (the history row written by the ORM), one transaction each; the
    service one result per call (an instrument sending each as it comes) and a batch's
    panel per call; and the same two through the API with a bearer token, idempotency key,
    validation and the answer's serialisation."""
    from django.db import transaction
    from django.urls import reverse
    from rest_framework.test import APIClient

    from batches import services
    from batches.models import TestResult
    from controlsite.api.models import TokenScope
    from controlsite.api.tokens import api_token_create
    from controlsite.audit.context import audit_context

    per_batch = SPECS
    wanted = results // per_batch + 1
    paths = ["plain", "service, 1 per call", "service, 10 per call", "API, 1 per call"]
    paths += ["API, 10 per call"]
    with audit_context(reason="bench"):
        targets = {
            path: [
                services.batch_start(
                    actor=operator,
                    site=site,
                    product=template.product,
                    coi_reference=f"ING-{n}-{i:05d}",
                )
                for i in range(wanted)
            ]
            for n, path in enumerate(paths)
        }
    specs = list(template.specifications.order_by("key"))
    from tests.personas import make_persona

    _, secret = api_token_create(
        user=operator,
        name="bench ingestion",
        scope=TokenScope.READ_WRITE,
        created_by=make_persona("sysadmin", username="bench-b-admin"),
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    calls = 0

    def post(url: str, body: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        response = api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=f"bench-{calls}")
        if response.status_code != 201:
            raise SystemExit(f"POST {url} answered {response.status_code}: {response.content!r}")

    def panels(path: str) -> Any:
        """(batch, its specifications) until `results` results are covered."""
        left = results
        for batch in targets[path]:
            if left <= 0:
                return
            yield batch, specs[: min(per_batch, left)]
            left -= per_batch

    def plain() -> None:
        for batch, panel in panels("plain"):
            for spec in panel:
                with transaction.atomic():
                    TestResult.objects.create(
                        batch=batch,
                        specification=spec,
                        value="80",
                        passed=True,
                        created_by=operator,
                    )

    def service_single() -> None:
        for batch, panel in panels("service, 1 per call"):
            for spec in panel:
                with audit_context(reason="integrator result", origin="api"):
                    services.result_record(
                        actor=operator, batch=batch, specification_key=spec.key, value="80"
                    )

    def service_panel() -> None:
        for batch, panel in panels("service, 10 per call"):
            with audit_context(reason="integrator results", origin="api"):
                services.results_record(
                    actor=operator,
                    batch=batch,
                    entries=[services.ResultEntry(spec.key, "80") for spec in panel],
                )

    def api_single() -> None:
        for batch, panel in panels("API, 1 per call"):
            url = reverse("api:batch-results", args=[batch.number])
            for spec in panel:
                post(url, {"specification": spec.key, "value": "80"})

    def api_panel() -> None:
        for batch, panel in panels("API, 10 per call"):
            post(
                reverse("api:batch-results-bulk", args=[batch.number]),
                {"results": [{"specification": spec.key, "value": "80"} for spec in panel]},
            )

    def timed(run: Any) -> float:
        t0 = time.perf_counter()
        run()
        return (time.perf_counter() - t0) * 1000

    with audit_context(reason="bench: plain inserts (the history row is written by the ORM)"):
        plain_ms = timed(plain)
    measured = [
        ("service, 1 per call", timed(service_single)),
        ("service, 10 per call", timed(service_panel)),
        ("API, 1 per call", timed(api_single)),
        ("API, 10 per call", timed(api_panel)),
    ]
    if TestResult.objects.filter(batch__coi_reference__startswith="ING-").count() != 5 * results:
        raise SystemExit("ingestion bench: a path did not record every result; fix the bench.")
    return Ingestion(plain_ms, measured)


@dataclasses.dataclass(frozen=True)
class BatchBenchReport:
    results: list[tuple[str, int, float, float]]
    queries: list[QueryCount]
    notes: list[str]


def run_batches(
    *, sites: int, batches: int, awaiting: int, repeats: int, certify: int, results: int
) -> BatchBenchReport:
    from django.contrib.auth.hashers import Argon2PasswordHasher, check_password
    from django.test.utils import override_settings
    from django.urls import reverse

    from batches import certificates, services
    from batches.models import Batch
    from controlsite.audit.context import audit_context
    from tests.personas import PASSWORD, login

    started = time.perf_counter()
    _qa, qp, operator, every, template = _network(sites)
    network_s = time.perf_counter() - started

    from django.test import Client

    client = login(Client(), qp)
    baseline_url, queue_url = reverse("home"), reverse("batches:queue")
    counts: list[tuple[int, int]] = []
    seed_s = 0.0
    done = 0
    for fraction in (10, 1):
        t0 = time.perf_counter()
        target = batches // fraction
        _seed(template, every, target, min(awaiting, target), done)
        done = target
        seed_s += time.perf_counter() - t0
        _analyze()
        counts.append((Batch.objects.count(), len(_captured(client, queue_url))))
    baseline = _median_ms(client, baseline_url, repeats)
    queue = _median_ms(client, queue_url, repeats)
    queue_bytes = len(_get(client, queue_url).content)

    # Certification, with production's argon2 on the QP's password.
    # The batches are made first: the operator's password is hashed with the tests' hasher.
    with audit_context(reason="bench"):
        ready = [_ready(operator, every[0], template, f"CERT-{i:04d}") for i in range(certify)]
    argon2 = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    with override_settings(PASSWORD_HASHERS=argon2):
        with audit_context(reason="bench: production password hasher"):
            qp.set_password(PASSWORD)
            qp.save(update_fields=["password"])
        hashes = []
        for _ in range(max(5, certify)):
            t0 = time.perf_counter()
            check_password(PASSWORD, qp.password)
            hashes.append((time.perf_counter() - t0) * 1000)
        hash_ms = statistics.median(hashes)
        creds = _qp_signer(qp, certify)
        spent, net = [], []
        # The hash's own time inside each certification, so the net figure subtracts the
        # hash that call made, not a median of others (argon2 varies by ±10 ms).
        hashing: list[float] = []
        verify = Argon2PasswordHasher.verify

        def timed_verify(self: Any, password: str, encoded: str) -> bool:
            t0 = time.perf_counter()
            try:
                return bool(verify(self, password, encoded))
            finally:
                hashing.append((time.perf_counter() - t0) * 1000)

        # Tasks run in-process here: the certificate PDF that a decision queues would be made
        # inside the timed call. In production a worker makes it; only the queueing is timed.
        sent: list[int] = []
        with (
            mock.patch.object(certificates, "enqueue_on_commit", lambda t, pk: sent.append(pk)),
            mock.patch.object(Argon2PasswordHasher, "verify", timed_verify),
        ):
            for batch, credentials in zip(ready, creds, strict=True):
                hashing.clear()
                t0 = time.perf_counter()
                services.batch_certify(
                    actor=qp, batch=batch, credentials=credentials, reason="bench certification"
                )
                spent.append((time.perf_counter() - t0) * 1000)
                assert len(hashing) == 1, "one password check per certification"
                net.append(spent[-1] - hashing[0])
        assert len(sent) == certify
        certify_ms = statistics.median(spent)
        certify_net_ms = statistics.median(net)

    # Ingestion: plain inserts (the baseline) against results through the service, one per
    # call and a batch's panel per call, and through the API's two endpoints.
    ingest = _ingestion(operator, every[0], template, results)

    total = Batch.objects.count()
    rows = [
        ("QP queue first page (GET batches:queue) vs home", total, baseline, queue),
        ("QP certification (batch_certify) vs argon2 check", certify, hash_ms, certify_ms),
        *[
            (f"result ingestion: {label} vs ORM insert", results, ingest.plain_ms, ms)
            for label, ms in ingest.paths
        ],
    ]
    queries = [QueryCount("QP queue page (batches)", *counts[0], *counts[1])]
    notes = [
        f"batches: {len(every)} sites; {total} batches ({awaiting} awaiting certification) "
        f"bulk-loaded in {seed_s:.1f} s; network (product, master file, template) in "
        f"{network_s:.1f} s",
        f"  QP queue first page  {queue:7.1f} ms median of {repeats} (aim < {AIM_QUEUE_MS:.0f} "
        f"ms), home {baseline:.1f} ms; {counts[1][1]} queries; {queue_bytes / 1024:.0f} KiB",
        f"  certification        {certify_ms:7.1f} ms median of {certify}; argon2 check "
        f"{hash_ms:.1f} ms; certification minus its own hash {certify_net_ms:.1f} ms, median "
        f"(aim < {AIM_CERTIFY_NET_MS:.0f} ms)",
        *ingest.notes(results),
    ]
    return BatchBenchReport(rows, queries, notes)
