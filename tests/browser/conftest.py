from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from tests.processes import in_ci

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's Chromium driven by Playwright, with a fresh profile (never a downloaded browser).

    Module-scoped: Playwright's sync API runs an event loop in this thread while it is open, and the
    async tests elsewhere need that thread's loop free.
    """
    executable = shutil.which("chromium")
    if executable is None:
        if in_ci():
            pytest.fail("chromium is not installed; `make test` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (run `make test` as root to install it)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    """A new tab with no cookies left by an earlier test (each test signs in itself)."""
    chromium.clear_cookies()
    page = chromium.new_page()
    page.set_default_timeout(15_000)
    yield page
    page.close()
