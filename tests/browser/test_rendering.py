"""Markdown in a real browser: rendered while it streams, harmless whatever the model writes, copyable."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chat.simulator import markdown_tokens
from tests.browser.conftest import log_in, send, start_site
from tests.browser.test_chat_flow import choose_model

pytestmark = [pytest.mark.live, pytest.mark.browser]

# Installed before any page script: records what must never happen on a chat page.
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", e => window.__violations.push(e.violatedDirective));
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=50, reply_tokens=40) as url:
        yield url


def last_reply(page: Page):
    return page.locator('[data-role="assistant"]').last


def test_markdown_is_rendered_while_the_reply_streams_and_the_same_after_reload(page: Page, site: str):
    log_in(page, site)
    choose_model(page, "demo?tokens=300&tps=60&style=markdown")
    send(page, "Show me some Markdown")
    page.wait_for_url(f"{site}/c/*/")
    reply = last_reply(page)
    # A heading is a heading element before the reply has ended.
    expect(reply.locator(".message-body h2").first).to_have_text("What the simulator can show")
    assert reply.get_attribute("data-status") == "streaming"
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    body = reply.locator(".message-body")
    expect(body.locator("table")).not_to_have_count(0)
    expect(body.locator(".code-block .code-lang").first).to_have_text("python")
    expect(body.locator(".code-block .k").first).to_be_visible()  # highlighted
    expect(body.locator('.task-box[aria-label="Done"]').first).to_be_visible()
    assert body.locator(".md-tail").count() == 0
    streamed = body.inner_html()

    page.reload()
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    assert last_reply(page).locator(".message-body").inner_html() == streamed


def test_a_hostile_reply_runs_nothing_and_changes_nothing_outside_itself(page: Page, site: str):
    page.add_init_script(WATCH)
    log_in(page, site)
    send(page, "A harmless first question")
    page.wait_for_url(f"{site}/c/*/")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    first_user = page.locator('[data-role="user"] .message-body').first.inner_html()
    first_reply = last_reply(page).locator(".message-body").inner_html()

    choose_model(page, "demo?tokens=400&tps=80&style=hostile")
    page.get_by_label("Message").fill("Now attack the page")
    page.get_by_role("button", name="Send").click()
    hostile = last_reply(page)
    expect(hostile).to_have_attribute("data-status", "streaming")
    expect(hostile.locator(".message-body h1").first).to_have_text("A hostile reply")  # mid-stream
    check_untouched(page, first_user, first_reply)
    expect(hostile).to_have_attribute("data-status", "complete", timeout=20_000)
    check_untouched(page, first_user, first_reply)
    for each in (
        "script",
        "img",
        "svg",
        "iframe",
        "form",
        "input",
        "style",
        "[hx-get]",
        "[onerror]",
        "[style]",
    ):
        assert hostile.locator(f".message-body {each}").count() == 0, each
    assert hostile.locator('.message-body a[href^="javascript"]').count() == 0
    assert hostile.locator(".message-body a.image-link").first.get_attribute("href").startswith("https://")

    page.reload()
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    check_untouched(page, first_user, first_reply)


def check_untouched(page: Page, first_user: str, first_reply: str) -> None:
    assert page.evaluate("() => window.pwned") is None, "model output ran script"
    assert page.evaluate("() => window.__violations || []") == []
    assert page.locator('[data-role="user"] .message-body').first.inner_html() == first_user
    assert page.locator('[data-role="assistant"] .message-body').first.inner_html() == first_reply
    assert page.locator("#messages").count() == 1
    ids = page.evaluate("() => [...document.querySelectorAll('[id]')].map(e => e.id)")
    assert len(ids) == len(set(ids)), "model output added an id that is already on the page"


def test_copy_buttons_copy_the_code_and_the_replys_markdown(page: Page, site: str, chromium):
    chromium.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    log_in(page, site)
    tokens = 94  # one whole passage
    choose_model(page, f"demo?tokens={tokens}&tps=0&style=markdown")
    send(page, "Code, please")
    page.wait_for_url(f"{site}/c/*/")
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)

    copy_code = reply.locator(".code-block .copy-code").first
    copy_code.focus()
    page.keyboard.press("Enter")  # keyboard-usable
    expect(copy_code).to_have_text("Copied")
    clipboard = page.evaluate("() => navigator.clipboard.readText()")
    assert clipboard == 'def greet(name: str) -> str:\n    """Say hello."""\n    return f"Hello, {name}!"\n'

    reply.locator(".copy-reply").click()
    expect(reply.locator(".copy-reply")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == "".join(markdown_tokens(tokens))
