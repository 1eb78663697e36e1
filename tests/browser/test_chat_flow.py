"""The whole path in a real browser: Daphne, the simulator over loopback HTTP, and Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chat.simulator import reasoning_text, reply_text
from tests.browser.conftest import log_in, send, start_site
from tests.dom import shown_text

pytestmark = [pytest.mark.live, pytest.mark.browser]

REPLY_TOKENS = 40


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=25, reply_tokens=REPLY_TOKENS) as url:
        yield url


def test_reply_streams_into_the_page_completes_and_survives_reload(page: Page, site: str):
    log_in(page, site)
    expect(page.get_by_label("Model")).to_have_value("demo")
    send(page, "Hello from the browser")
    page.wait_for_url(f"{site}/c/*/")
    expected = shown_text(reply_text([{"role": "user", "content": "Hello from the browser"}], REPLY_TOKENS))

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
    assert expected.startswith(partial.rstrip())

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
    assert second.locator(".message-body").text_content() == shown_text(reply_text(history, REPLY_TOKENS))

    composer.fill("line one")
    composer.press("Shift+Enter")
    composer.type("line two")
    expect(composer).to_have_value("line one\nline two")
    expect(page.locator('[data-role="user"]')).to_have_count(2)


def choose_model(page: Page, model: str) -> None:
    """Pick a model id the server's list does not carry (the simulator reads faults from it)."""
    page.evaluate(
        """m => { const s = document.querySelector('#model-select');
                  s.add(new Option(m, m)); s.value = m; }""",
        model,
    )


def test_thinking_streams_into_a_collapsed_section_apart_from_the_answer(page: Page, site: str):
    log_in(page, site)
    choose_model(page, "demo?tokens=8&tps=25&fault=think-12+finish-length")
    send(page, "Think first")
    page.wait_for_url(f"{site}/c/*/")
    reply = page.locator('[data-role="assistant"]').last
    thinking = reply.locator("details.thinking")
    expect(thinking).to_be_visible()  # shown as soon as reasoning arrives, while streaming
    expect(thinking.locator("summary")).to_have_text("Thinking")
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)

    body = reply.locator(".message-body")
    assert body.text_content() == shown_text(reply_text([{"role": "user", "content": "Think first"}], 8))
    assert "think>" not in body.text_content()
    expect(thinking.locator(".thinking-body")).not_to_be_visible()  # collapsed
    thinking.locator("summary").click()
    expect(thinking.locator(".thinking-body")).to_have_text(reasoning_text(12))
    expect(reply.get_by_text("The answer hit the length limit.")).to_be_visible()

    page.reload()
    expect(reply.locator("details.thinking .thinking-body")).to_have_text(reasoning_text(12))
    expect(reply.get_by_text("The answer hit the length limit.")).to_be_visible()


def test_a_reply_without_reasoning_shows_no_thinking_section(page: Page, site: str):
    log_in(page, site)
    send(page, "Just answer")
    page.wait_for_url(f"{site}/c/*/")
    reply = page.locator('[data-role="assistant"]').last
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(reply.locator("details.thinking")).to_be_hidden()


def test_a_new_chat_starts_on_the_same_page_without_loading_another(page: Page, site: str):
    log_in(page, site)
    page.evaluate("() => { window.sameDocument = true; }")
    send(page, "No page load, please")
    page.wait_for_url(f"{site}/c/*/")
    reply = page.locator('[data-role="assistant"]').last
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    assert page.evaluate("() => window.sameDocument") is True, "the page was loaded again"
    expected = shown_text(reply_text([{"role": "user", "content": "No page load, please"}], REPLY_TOKENS))
    assert reply.locator(".message-body").text_content() == expected
    expect(page.locator('#conversation-list a[aria-current="page"]')).to_have_text("No page load, please")
    assert page.title() == "No page load, please · Chat"
    expect(page.locator("#conversation-settings summary")).to_have_text("Conversation settings")
    expect(page.get_by_label("Message")).to_be_focused()

    page.get_by_label("Message").fill("And a second one")
    page.get_by_label("Message").press("Enter")
    expect(page.locator('[data-role="assistant"]')).to_have_count(2)
    expect(page.locator('[data-role="assistant"]').last).to_have_attribute(
        "data-status", "complete", timeout=20_000
    )
    assert page.evaluate("() => window.sameDocument") is True

    conversation_url = page.url
    page.reload()
    expect(page.locator('[data-role="assistant"]')).to_have_count(2)
    page.go_back()
    expect(page.get_by_text("Ask anything to start a conversation.")).to_be_visible()
    assert page.url == f"{site}/"
    page.go_forward()
    assert page.url == conversation_url
