"""The whole path in a real browser: Daphne, the simulator over loopback HTTP, and Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chat.simulator import reply_text
from tests.processes import base_env, daphne_process, manage, simulator_process

pytestmark = [pytest.mark.live, pytest.mark.browser]

REPLY_TOKENS = 40


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    """A migrated file-backed database, an admin made with createsuperuser, the simulator and Daphne."""
    database = Path(tmp_path_factory.mktemp("site")) / "db.sqlite3"
    with simulator_process("--tokens-per-second", "25", "--reply-tokens", str(REPLY_TOKENS)) as upstream:
        env = base_env(
            DATABASE_URL=f"sqlite:///{database}",
            CHAT_API_BASE=upstream,
            CHAT_MODEL="demo",
            DJANGO_SUPERUSER_PASSWORD="alice-password-1",
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


def test_reply_streams_into_the_page_completes_and_survives_reload(page: Page, site: str):
    log_in(page, site)
    expect(page.get_by_label("Model")).to_have_value("demo")
    send(page, "Hello from the browser")
    page.wait_for_url(f"{site}/c/*/")
    expected = reply_text([{"role": "user", "content": "Hello from the browser"}], REPLY_TOKENS)

    reply = page.locator('[data-role="assistant"]').last
    body = reply.locator(".message-body")
    # Partial text in the DOM while the reply is still streaming.
    page.wait_for_function(
        """() => { const r = [...document.querySelectorAll('[data-role="assistant"]')].pop();
                   return r && r.dataset.status === "streaming"
                       && r.querySelector('.message-body').textContent.length > 0; }"""
    )
    partial = body.text_content()
    assert 0 < len(partial) < len(expected)
    assert expected.startswith(partial)

    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    assert body.text_content() == expected
    expect(page.locator('[data-role="user"] .message-body').last).to_have_text("Hello from the browser")

    page.reload()
    expect(reply).to_have_attribute("data-status", "complete")
    assert body.text_content() == expected


def test_second_message_goes_over_the_socket_and_enter_sends(page: Page, site: str):
    log_in(page, site)
    send(page, "First question")
    page.wait_for_url(f"{site}/c/*/")
    first = page.locator('[data-role="assistant"]').first
    expect(first).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(page.locator("#chat")).to_have_attribute("data-connection", "open")

    composer = page.get_by_label("Message")
    composer.fill("Second question")
    composer.press("Enter")
    expect(page.locator('[data-role="user"]')).to_have_count(2)
    expect(composer).to_have_value("")  # cleared once the server stored it
    second = page.locator('[data-role="assistant"]').nth(1)
    expect(second).to_have_attribute("data-status", "complete", timeout=20_000)
    history = [
        {"role": "user", "content": "First question"},
        {
            "role": "assistant",
            "content": reply_text([{"role": "user", "content": "First question"}], REPLY_TOKENS),
        },
        {"role": "user", "content": "Second question"},
    ]
    assert second.locator(".message-body").text_content() == reply_text(history, REPLY_TOKENS)

    composer.fill("line one")
    composer.press("Shift+Enter")
    composer.type("line two")
    expect(composer).to_have_value("line one\nline two")
    expect(page.locator('[data-role="user"]')).to_have_count(2)
