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
from collections.abc import Callable, Sequence

from controlsite.signatures.services import SignatureCredentials

DEMO_PASSWORD = "ControlSite-demo-2026"  # noqa: S105  (published demo credential, refused in production)
DEMO_REASON = "demo data"


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
