"""Debian's Chromium driven by Playwright, shared by the browser tests in tests/e2e.

Playwright drives /usr/bin/chromium (never a downloaded browser); the browser resolves
the stack's host name to the stack's own loopback address, so it reaches the real nginx
on 443. Screenshots go to docs/screenshots/ (desktop 1280 and phone 390 wide).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import HOSTNAME, Stack

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
BASE = f"https://{HOSTNAME}"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def need_chromium() -> None:
    """Skip the calling module's tests when Debian's chromium package is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium package is not installed")


@contextmanager
def chromium_for(stack: Stack) -> Iterator[Any]:
    """Chromium that resolves the stack's host name to the stack's address."""
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", f"--host-resolver-rules=MAP {HOSTNAME} {stack.address}"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def new_context(browser: Any, viewport: dict[str, int] = DESKTOP, **extra: Any) -> Any:
    return browser.new_context(
        ignore_https_errors=True, viewport=viewport, is_mobile=viewport is PHONE, **extra
    )


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, email: str, password: str) -> None:
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("main button[type=submit]")
    page.wait_for_load_state()


def submit(page: Any, selector: str) -> None:
    page.click(selector)
    page.wait_for_load_state()
