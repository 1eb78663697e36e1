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


def long_export(title: str = "A long conversation", words=lambda n: 40) -> list[dict]:
    """One conversation of ``TURNS`` turns in Open WebUI's export shape; answer n has ``words(n)`` words."""
    now = int(time.time()) - 3600
    messages, parent = {}, None
    for n in range(TURNS):
        for role, key, text in (
            ("user", f"q{n}", f"Question {n}"),
            ("assistant", f"a{n}", f"Answer {n}\n\n" + "More. " * words(n)),
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
            "title": title,
            "created_at": now,
            "updated_at": now + TURNS,
            "chat": {"history": {"messages": messages, "currentId": parent}},
        }
    ]


def open_imported(page: Page, site: str, path, export: list[dict]) -> None:
    path.write_text(json.dumps(export))
    page.goto(f"{site}/import/")
    page.get_by_label("Import conversations").set_input_files(str(path))
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_role("navigation", name="Your conversations").get_by_role(
        "link", name=export[0]["title"]
    ).click()
    page.wait_for_url(f"{site}/c/*/")


def test_scrolling_up_loads_older_messages_and_keeps_the_reader_in_place(page: Page, site: str, tmp_path):
    log_in(page, site)
    open_imported(page, site, tmp_path / "long.json", long_export())

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


# Scrolls the list up in steps; each time, how far the message at the middle of the view moved
# on screen once the messages that came near the view have been laid out (two frames later).
SCROLL_UP_IN_STEPS = """async ({ steps, by }) => {
    const list = document.getElementById("messages");
    const frame = () => new Promise(resolve => requestAnimationFrame(() => resolve()));
    const moves = [];
    for (let i = 0; i < steps; i++) {
        const view = list.getBoundingClientRect();
        const middle = view.top + view.height / 2;
        const anchor = [...list.querySelectorAll("article")].find(
            article => article.getBoundingClientRect().bottom >= middle
        );
        const before = anchor.getBoundingClientRect().top;
        list.scrollTop -= by;
        await frame();
        await frame();
        moves.push(Math.round(anchor.getBoundingClientRect().top - before));
    }
    return moves;
}"""


def test_messages_far_from_the_view_are_not_laid_out_and_the_view_holds_still_as_they_are(
    page: Page, site: str, tmp_path
):
    log_in(page, site)
    # Answers from one line to a screenful: their real heights are far from the placeholder's.
    export = long_export("Answers of many lengths", words=lambda n: (n % 5) * 60 + 1)
    open_imported(page, site, tmp_path / "varied.json", export)
    articles = page.locator("#messages article")
    expect(articles).to_have_count(50)
    page.wait_for_function(
        "() => { const l = document.getElementById('messages');"
        " return l.scrollHeight - l.scrollTop - l.clientHeight < 2; }"
    )
    skipped = "body => !body.checkVisibility({ contentVisibilityAuto: true })"
    assert articles.first.locator(".message-body").evaluate(skipped)  # far above: not laid out
    assert not articles.last.locator(".message-body").evaluate(skipped)  # in view

    # The reader scrolls up through messages being laid out as they come near: what they read
    # moves by exactly the scroll, never jumps by a placeholder's error.
    moves = page.evaluate(SCROLL_UP_IN_STEPS, {"steps": 10, "by": 250})
    assert all(abs(move - 250) <= 1 for move in moves), moves
    expect(page.get_by_role("button", name="Jump to latest")).to_be_visible()
