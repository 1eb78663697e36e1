"""In Chromium: a long conversation opens with its latest messages and loads older ones on scroll-up."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, start_site

pytestmark = [pytest.mark.live, pytest.mark.browser]

TURNS = 75  # 150 messages: three pages


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=200, reply_tokens=12) as url:
        yield url


def long_export() -> list[dict]:
    """One conversation of ``TURNS`` turns in Open WebUI's export shape."""
    now = int(time.time()) - 3600
    messages, parent = {}, None
    for n in range(TURNS):
        for role, key, text in (
            ("user", f"q{n}", f"Question {n}"),
            ("assistant", f"a{n}", f"Answer {n}\n\n" + "More. " * 40),
        ):
            messages[key] = {
                "id": key,
                "parentId": parent,
                "childrenIds": [],
                "role": role,
                "content": text,
                "timestamp": now + n,
            }
            if parent:
                messages[parent]["childrenIds"].append(key)
            parent = key
    return [
        {
            "id": "long",
            "title": "A long conversation",
            "created_at": now,
            "updated_at": now + TURNS,
            "chat": {"history": {"messages": messages, "currentId": parent}},
        }
    ]


def test_scrolling_up_loads_older_messages_and_keeps_the_reader_in_place(page: Page, site: str, tmp_path):
    log_in(page, site)
    export = tmp_path / "long.json"
    export.write_text(json.dumps(long_export()))
    page.goto(f"{site}/import/")
    page.get_by_label("Import conversations").set_input_files(str(export))
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_role("navigation", name="Your conversations").get_by_role(
        "link", name="A long conversation"
    ).click()
    page.wait_for_url(f"{site}/c/*/")

    articles = page.locator("#messages article")
    expect(articles).to_have_count(50)
    expect(articles.first).to_contain_text("Question 50")
    expect(articles.last).to_contain_text("Answer 74")

    # Scrolling to the top brings the previous page in above, and what was at the top stays in view.
    reading = page.locator("article", has_text="Question 50").first
    page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
    expect(articles).to_have_count(100)
    expect(reading).to_be_in_viewport()
    page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
    expect(articles).to_have_count(150)
    expect(articles.first).to_contain_text("Question 0")
    expect(page.get_by_role("button", name="Load earlier messages")).to_have_count(0)


def test_a_message_link_opens_the_conversation_at_that_message(page: Page, site: str, tmp_path):
    log_in(page, site)
    page.goto(f"{site}/")
    page.get_by_role("navigation", name="Your conversations").get_by_role(
        "link", name="A long conversation"
    ).click()
    page.wait_for_url(f"{site}/c/*/")
    first_shown = page.locator("#messages article").first.get_attribute("id")
    older_id = int(first_shown.removeprefix("m-")) - 40  # a message from the first page
    page.goto(f"{page.url}?m={older_id}#m-{older_id}")
    expect(page.locator(f"#m-{older_id}")).to_be_in_viewport()
