"""In Chromium: the sidebar's search finds a word of a reply and opens the conversation at it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from chat.simulator import reply_text
from tests.browser.conftest import log_in, send, start_site

pytestmark = [pytest.mark.live, pytest.mark.browser]

REPLY_TOKENS = 30


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=300, reply_tokens=REPLY_TOKENS) as url:
        yield url


def test_a_word_from_a_reply_is_found_highlighted_and_opens_at_its_message(page: Page, site: str):
    log_in(page, site)
    question = "Tell me something about lighthouses"
    send(page, question)
    page.wait_for_url(f"{site}/c/*/")
    expect(page.locator('[data-role="assistant"]').last).to_have_attribute("data-status", "complete")
    address = page.url
    answer = reply_text([{"role": "user", "content": question}], REPLY_TOKENS)
    candidates = [w for w in re.findall(r"[A-Za-z]{5,}", answer) if w.lower() not in question.lower()]
    word = max(candidates, key=len)  # a word only the reply has

    page.goto(f"{site}/")  # from another page
    box = page.get_by_label("Search conversations")
    box.fill(word[:-1])  # the last word matches as a prefix while typing
    results = page.locator("#search-results")
    hit = results.get_by_role("link").filter(has_text=question)
    expect(hit).to_have_count(1)
    expect(hit.locator("mark").first).to_have_text(re.compile(re.escape(word), re.IGNORECASE))
    expect(page.get_by_role("navigation", name="Your conversations")).to_be_hidden()  # results stand in
    hit.click()
    page.wait_for_url(re.compile(re.escape(address) + r"\?m=\d+#m-\d+"))
    target = page.url.rsplit("#", 1)[1]
    expect(page.locator(f"#{target}")).to_be_in_viewport()
    expect(page.locator(f"#{target}")).to_have_attribute("data-role", "assistant")

    box = page.get_by_label("Search conversations")
    box.fill("nothingmatchesthis")
    expect(page.locator("#search-results")).to_contain_text("No conversations match “nothingmatchesthis”.")
    box.fill("")
    expect(page.get_by_role("navigation", name="Your conversations")).to_be_visible()
