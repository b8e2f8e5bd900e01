"""The home dashboard's panel registry. Apps register panels in `AppConfig.ready()`; the kernel
renders whatever is registered, in order, and never imports an app."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest


@dataclasses.dataclass(frozen=True)
class Panel:
    name: str
    title: str
    template: str
    context: Callable[[HttpRequest], dict[str, Any] | None]
    order: int = 100


_panels: dict[str, Panel] = {}


def register(panel: Panel) -> None:
    _panels[panel.name] = panel


def panels_for(request: HttpRequest) -> list[tuple[Panel, dict[str, Any]]]:
    """Panels this user may see (a panel's context callable returns None to hide itself)."""
    shown = []
    for panel in sorted(_panels.values(), key=lambda p: (p.order, p.name)):
        ctx = panel.context(request)
        if ctx is not None:
            shown.append((panel, ctx))
    return shown


#
# The site page's panels
#


@dataclasses.dataclass(frozen=True)
class SitePanel:
    """A panel on a site's own page (sites/detail.html), contributed by an app above `sites`
    (training's compliance, say) without `sites` importing it (design §2). `context` takes the
    request and the site and returns None to hide the panel from this person."""

    name: str
    title: str
    template: str
    context: Callable[[HttpRequest, Any], dict[str, Any] | None]
    order: int = 100


_site_panels: dict[str, SitePanel] = {}


def register_site_panel(panel: SitePanel) -> None:
    _site_panels[panel.name] = panel


def site_panels_for(request: HttpRequest, site: Any) -> list[tuple[SitePanel, dict[str, Any]]]:
    """The site-page panels this person may see for `site`, in order."""
    shown = []
    for panel in sorted(_site_panels.values(), key=lambda p: (p.order, p.name)):
        ctx = panel.context(request, site)
        if ctx is not None:
            shown.append((panel, ctx))
    return shown
