"""In Chromium: the model's title replaces the question's first words in the sidebar and the tab."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chat import titles
from chat.simulator import reply_text
from tests.browser.conftest import log_in, send, start_site

pytestmark = [pytest.mark.live, pytest.mark.browser]

REPLY_TOKENS = 12


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(
        tmp_path_factory, tokens_per_second=200, reply_tokens=REPLY_TOKENS, CHAT_MODEL_TITLES="true"
    ) as url:
        yield url


def test_the_title_arrives_live_in_the_sidebar_header_and_tab(page: Page, site: str):
    log_in(page, site)
    question = "What should I pack for a week of hiking in the Alps?"
    send(page, question)
    page.wait_for_url(f"{site}/c/*/")
    answer = reply_text([{"role": "user", "content": question}], REPLY_TOKENS)
    request = [
        {"role": "system", "content": titles.INSTRUCTION},
        {"role": "user", "content": f"Question: {question}\n\nAnswer: {answer}"},
    ]
    title = titles.clean_title(reply_text(request, REPLY_TOKENS))
    assert title and title != question

    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page).to_have_title(f"{title} · Chat")
    sidebar = page.get_by_role("navigation", name="Your conversations")
    expect(sidebar.get_by_role("link", name=title)).to_have_attribute("aria-current", "page")
    page.reload()  # stored, not only shown
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
