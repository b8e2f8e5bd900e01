"""The demo-data registry: what each app adds to `manage.py demo_setup` (design §2, §9).

Each app registers a loader in `AppConfig.ready()`:

    demo.register(demo.DemoLoader("sites", load_demo_sites, order=10))

`demo_setup` first makes the demo people (the kernel's own), then calls every loader in order
(apps low in the graph first), inside one transaction and the audit context "demo data", and
prints the section each returns after the table of logins. A loader acts only through its app's
services, as the demo person whose role would do it, signs with `credentials(username)`, and is
idempotent: a second run creates nothing. The kernel never imports an app.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlsite.accounts import mfa
from controlsite.accounts.models import User
from controlsite.signatures.services import SignatureCredentials

DEMO_PASSWORD = "ControlSite-demo-2026"  # noqa: S105  (published demo credential, refused in production)
DEMO_REASON = "demo data"

# How far back a demo authenticator's codes start (see `signer`): 120 30 s steps, an hour.
# The QP signs about fifty times across the demo (the accountability item, master-file
# approvals, certifications, the comparability history, a change control), one step each: the
# codes all stay in the past,
# so a real authenticator's next code is accepted as soon as the demo has run.
BACKDATE_STEPS = 120


@dataclasses.dataclass(frozen=True)
class DemoSection:
    """What a loader reports: a heading and its lines, printed as they are."""

    title: str
    lines: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DemoLoader:
    name: str
    load: Callable[[], DemoSection]
    order: int = 100


_loaders: dict[str, DemoLoader] = {}


def register(loader: DemoLoader) -> None:
    """Add a loader. Names are unique, one per app; registering another under a name is a bug."""
    if loader.name in _loaders and _loaders[loader.name] != loader:
        raise ValueError(f"A different demo loader is already registered as {loader.name!r}")
    _loaders[loader.name] = loader


def loaders() -> list[DemoLoader]:
    return sorted(_loaders.values(), key=lambda loader: (loader.order, loader.name))


def credentials(username: str) -> SignatureCredentials:
    """What a demo person types to sign: their username and the published demo password."""
    return SignatureCredentials(username=username, password=DEMO_PASSWORD)


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Lines of a plain left-aligned text table, indented two spaces, as demo_setup prints."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return ("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))).rstrip()

    return [line(header), line(tuple("-" * w for w in widths)), *(line(row) for row in rows)]


#
# Signing as a demo person
#


def _time_step(device: TOTPDevice) -> int:
    return int((time.time() - device.t0) // device.step)


@contextmanager
def signer(user: User) -> Iterator[Callable[[], SignatureCredentials]]:
    """What `user` types to sign, fresh for each signature: username, the demo password and,
    for a person with an authenticator (the QP), a one-time code (ES-09).

    An authenticator shows one code per 30 s step and django-otp accepts each step once (it
    keeps the last one used, `last_t`), so a QP who signs five times in a few seconds needs
    five steps. The codes given here are those of successive unused steps starting
    BACKDATE_STEPS steps ago — as if the QP had signed over the last few minutes — so the
    replay guard ends behind the clock and the QP's real authenticator works straight after the
    demo. The device's tolerance is widened to reach them and, with the clock correction
    (`drift`) django-otp learns from each code, put back when the block ends. All of this happens
    inside the loader's transaction: if anything fails, the widened tolerance is never
    committed."""
    typed = credentials(user.get_username())
    device = mfa.confirmed_device(user)
    if device is None:
        yield lambda: typed
        return
    tolerance, drift = device.tolerance, device.drift
    floor = _time_step(device) - BACKDATE_STEPS

    def next_credentials() -> SignatureCredentials:
        current = mfa.confirmed_device(user)  # as the previous signature left it
        assert current is not None  # noqa: S101  (the block holds the device)
        step = max(current.last_t + 1, floor)
        reach = abs(step - (_time_step(current) + current.drift)) + 1
        if current.tolerance < reach:
            current.tolerance = reach
            current.save(update_fields=["tolerance"])
        code = hotp(current.bin_key, step, digits=current.digits)
        return dataclasses.replace(typed, otp=f"{code:0{current.digits}d}")

    yield next_credentials
    device.refresh_from_db()
    device.tolerance, device.drift = tolerance, drift
    device.save(update_fields=["tolerance", "drift"])
