"""Headless Chromium for the e2e tests, launched from the system binary (no `playwright install`).

The fixture names (`e2e_browser`, `e2e_page`) differ from pytest-playwright's (`browser`, `page`)
so that its plugin, when loaded, never launches a browser of its own. Run with `-p no:playwright`
to keep it out entirely.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def e2e_playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def e2e_browser(e2e_playwright: Playwright) -> Iterator[Browser]:
    browser = e2e_playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


def _page(browser: Browser, **options: Any) -> Iterator[Page]:
    """A fresh browser context (no cookies): British locale, UTC, 10 s waits.

    Script errors on the page fail the test: the shell must not throw.
    """
    context = browser.new_context(locale="en-GB", timezone_id="UTC", **options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(autouse=True)
def _seeded_database(migration_seeds: None) -> None:
    """Every e2e test runs against a live server, so its database is flushed after it: the data
    migrations' rows are put back first (tests/conftest.py)."""


@pytest.fixture
def e2e_page(e2e_browser: Browser) -> Iterator[Page]:
    """A desktop-sized page (1280x800)."""
    yield from _page(e2e_browser, viewport=DESKTOP)


@pytest.fixture
def e2e_phone_page(e2e_browser: Browser) -> Iterator[Page]:
    """A phone-sized page (390x844), touch, as a QP on call would use it."""
    yield from _page(e2e_browser, viewport=PHONE, is_mobile=True, has_touch=True)


@pytest.fixture
def e2e_page_without_js(e2e_browser: Browser) -> Iterator[Page]:
    """A desktop-sized page with JavaScript off: every form must still work."""
    yield from _page(e2e_browser, viewport=DESKTOP, java_script_enabled=False)


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (tests/artifacts/, gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
