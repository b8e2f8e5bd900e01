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
