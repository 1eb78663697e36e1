"""In Chromium: the page's worker restarts mid-reply; the page says so, reconnects and catches up."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chat.simulator import reply_text
from tests.browser.conftest import log_in, send
from tests.dom import shown_text
from tests.processes import WORKER, ServerProcess, base_env, manage, simulator_process

pytestmark = [pytest.mark.live, pytest.mark.browser]

TOKENS = 60  # three seconds at 20 tokens a second


def test_a_restarting_worker_finishes_the_reply_and_the_page_reconnects(page: Page, tmp_path: Path):
    database = tmp_path / "db.sqlite3"
    with simulator_process("--tokens-per-second", "20", "--reply-tokens", str(TOKENS)) as upstream:
        env = base_env(
            DATABASE_URL=f"sqlite:///{database}",
            CHAT_API_BASE=upstream,
            CHAT_MODEL="demo",
            CHAT_SHUTDOWN_GRACE_SECONDS="15",
            DJANGO_SUPERUSER_PASSWORD="alice-password-1",
        )
        manage(env, "migrate", "--noinput")
        manage(env, "createsuperuser", "--noinput", "--username", "alice", "--email", "alice@example.com")
        first = ServerProcess([*WORKER, "-b", "127.0.0.1", "-p", "0", "chatsite.asgi:application"], env)
        second = None
        try:
            port = first.wait_for(r"Listening on TCP address [\d.]+:(\d+)").group(1)
            site = f"http://127.0.0.1:{port}"
            log_in(page, site)
            send(page, "Outlive a restart")
            page.wait_for_url(f"{site}/c/*/")
            reply = page.locator('[data-role="assistant"]').last
            expect(reply.locator(".message-body")).not_to_have_text("")

            first.process.send_signal(signal.SIGTERM)  # a deploy: the reply may finish, then it exits
            first.process.wait(timeout=20)
            expect(page.locator("#chat")).to_have_attribute("data-connection", "closed")
            expect(page.get_by_text("Reconnecting…")).to_be_visible()

            # The reply was still being written when the signal came, and the worker waited for it.
            assert "Shutting down: 1 replies running" in "".join(first.output)

            second = ServerProcess([*WORKER, "-b", "127.0.0.1", "-p", port, "chatsite.asgi:application"], env)
            second.wait_for("Listening on TCP address")
            expect(page.locator("#chat")).to_have_attribute("data-connection", "open", timeout=20_000)
            expect(reply).to_have_attribute("data-status", "complete")
            expected = shown_text(reply_text([{"role": "user", "content": "Outlive a restart"}], TOKENS))
            assert reply.locator(".message-body").text_content() == expected
        finally:
            first.stop()
            if second is not None:
                second.stop()
