"""In Chromium: a reply survives reloads, shows on every page, stops from anywhere, and keeps versions."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chat.simulator import reply_text
from tests.browser.conftest import log_in, send, start_site
from tests.dom import shown_text

pytestmark = [pytest.mark.live, pytest.mark.browser]

TOKENS = 60  # at 20 tokens a second: three seconds of streaming


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=20, reply_tokens=TOKENS) as url:
        yield url


def last_reply(page: Page):
    return page.locator('[data-role="assistant"]').last


def wait_for_partial_text(page: Page) -> None:
    page.wait_for_function(
        """() => { const r = [...document.querySelectorAll('[data-role="assistant"]')].pop();
                   return r && r.dataset.status === "streaming"
                       && r.querySelector('.message-body').textContent.length > 0; }"""
    )


def body(page: Page) -> str:
    return last_reply(page).locator(".message-body").text_content()


def test_reload_mid_reply_shows_the_text_so_far_and_completes_identically(page: Page, site: str):
    log_in(page, site)
    send(page, "Survive a reload")
    page.wait_for_url(f"{site}/c/*/")
    wait_for_partial_text(page)
    page.reload()
    # The text so far is in the page as served, before any socket frame.
    served = page.evaluate("() => document.querySelector('[data-role=assistant] .message-body').textContent")
    expected = shown_text(reply_text([{"role": "user", "content": "Survive a reload"}], TOKENS))
    assert 0 < len(served) < len(expected) and expected.startswith(served.rstrip())
    expect(last_reply(page)).to_have_attribute("data-status", "streaming")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    assert body(page) == expected
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)


def test_two_pages_stream_the_same_reply_and_stop_works_from_the_other(page: Page, site: str, chromium):
    log_in(page, site)
    send(page, "Watch me twice")
    page.wait_for_url(f"{site}/c/*/")
    wait_for_partial_text(page)
    other = chromium.new_page()
    try:
        other.goto(page.url)
        wait_for_partial_text(other)
        other.get_by_role("button", name="Stop").click()
        for each in (page, other):
            expect(last_reply(each)).to_have_attribute("data-status", "stopped", timeout=10_000)
            expect(last_reply(each)).to_contain_text("Stopped.")
            expect(each.get_by_role("button", name="Stop")).to_have_count(0)
        full = shown_text(reply_text([{"role": "user", "content": "Watch me twice"}], TOKENS))
        stopped = body(page)
        assert stopped == body(other)
        assert 0 < len(stopped) < len(full) and full.startswith(stopped.rstrip())
        page.reload()
        assert body(page) == stopped  # stored as it was shown

        # A message sent on one page appears, and streams, on the other.
        other.get_by_label("Message").fill("From the second tab")
        other.get_by_label("Message").press("Enter")
        expect(page.locator('[data-role="user"] .message-body').last).to_have_text("From the second tab")
        expect(last_reply(page)).to_have_attribute("data-status", "streaming")
        page.get_by_label("Message").press("Escape")  # Esc in the composer stops too
        for each in (page, other):
            expect(last_reply(each)).to_have_attribute("data-status", "stopped", timeout=10_000)
    finally:
        other.close()


def test_regenerate_and_edit_keep_versions_to_switch_between(page: Page, site: str):
    log_in(page, site)
    page.get_by_label("Model").select_option("demo")
    page.get_by_label("Message").fill("Versions please")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(f"{site}/c/*/")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    first = body(page)

    page.get_by_role("button", name="Regenerate").click()
    expect(last_reply(page)).to_contain_text("2/2")  # the new version, streaming
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    page.get_by_role("button", name="Previous version").click()
    expect(last_reply(page)).to_contain_text("1/2")
    assert body(page) == first

    page.get_by_role("button", name="Edit").click()
    page.get_by_label("Edited text").fill("Versions, edited")
    page.get_by_role("button", name="Save").click()
    user = page.locator('[data-role="user"]').last
    expect(user.locator(".message-body")).to_have_text("Versions, edited")
    expect(user).to_contain_text("2/2")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    assert body(page) == shown_text(reply_text([{"role": "user", "content": "Versions, edited"}], TOKENS))

    page.reload()
    expect(page.locator('[data-role="user"] .message-body').last).to_have_text("Versions, edited")
    page.locator('[data-role="user"]').last.get_by_role("button", name="Previous version").click()
    expect(page.locator('[data-role="user"] .message-body').last).to_have_text("Versions please")
    expect(last_reply(page)).to_contain_text("2/2")  # under it, the newest of its replies
