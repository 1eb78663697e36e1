from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.processes import base_env, daphne_process, in_ci, manage, simulator_process

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


@contextmanager
def start_site(tmp_path_factory, *, tokens_per_second: int, reply_tokens: int, **env: str) -> Iterator[str]:
    """A migrated file-backed database, an admin made with createsuperuser, the simulator and Daphne."""
    database = Path(tmp_path_factory.mktemp("site")) / "db.sqlite3"
    with simulator_process(
        "--tokens-per-second", str(tokens_per_second), "--reply-tokens", str(reply_tokens)
    ) as upstream:
        env = base_env(
            DATABASE_URL=f"sqlite:///{database}",
            CHAT_API_BASE=upstream,
            CHAT_MODEL="demo",
            DJANGO_SUPERUSER_PASSWORD="alice-password-1",
            **env,
        )
        manage(env, "migrate", "--noinput")
        manage(env, "createsuperuser", "--noinput", "--username", "alice", "--email", "alice@example.com")
        with daphne_process(env) as url:
            yield url


def log_in(page: Page, site: str) -> None:
    page.goto(f"{site}/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Message")).to_be_visible()


def send(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
