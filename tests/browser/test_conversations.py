"""In Chromium: the sidebar in date groups and pages, renaming in place, deleting with a confirmation."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, send, start_site

pytestmark = [pytest.mark.live, pytest.mark.browser]

DAY = 86_400


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=200, reply_tokens=12) as url:
        yield url


def open_webui_export(count: int, *, newest: float) -> list[dict]:
    """``count`` one-turn conversations in Open WebUI's export shape, one a day back from ``newest``."""
    records = []
    for n in range(count):
        when = int(newest - n * DAY)
        messages = {
            f"q{n}": {
                "id": f"q{n}",
                "parentId": None,
                "childrenIds": [f"a{n}"],
                "role": "user",
                "content": f"Question {n}",
                "timestamp": when,
            },
            f"a{n}": {
                "id": f"a{n}",
                "parentId": f"q{n}",
                "childrenIds": [],
                "role": "assistant",
                "content": f"Answer {n}",
                "timestamp": when,
            },
        }
        records.append(
            {
                "id": f"c{n}",
                "title": f"Old chat {n:03d}",
                "created_at": when,
                "updated_at": when,
                "chat": {"history": {"messages": messages, "currentId": f"a{n}"}},
            }
        )
    return records


def test_the_sidebar_groups_by_date_and_loads_older_conversations_as_it_scrolls(
    page: Page, site: str, tmp_path
):
    log_in(page, site)
    export = tmp_path / "history.json"
    export.write_text(json.dumps(open_webui_export(120, newest=time.time() - 2 * DAY)))
    page.goto(f"{site}/import/")
    page.get_by_label("Import conversations").set_input_files(str(export))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Imported 120 conversations")

    page.goto(f"{site}/")
    sidebar = page.get_by_role("navigation", name="Your conversations")
    for heading in ("Previous 7 days", "Previous 30 days"):
        expect(sidebar.get_by_role("heading", name=heading)).to_be_visible()
    links = sidebar.get_by_role("link", name="Old chat", exact=False)
    expect(links.first).to_have_text("Old chat 000")
    expect(links).to_have_count(50)
    older = sidebar.get_by_role("link", name="Older conversations")
    older.scroll_into_view_if_needed()
    expect(sidebar.get_by_role("link", name="Old chat 050")).to_be_attached()  # the next page came
    expect(links).to_have_count(100)
    older.scroll_into_view_if_needed()
    expect(links).to_have_count(120)
    texts = links.all_text_contents()
    assert texts == sorted(texts)  # newest first, nothing twice
    # Months past the first thirty days are their own groups, each headed once.
    headings = sidebar.get_by_role("heading").all_text_contents()
    assert len(headings) == len(set(headings)) >= 5


def test_rename_in_place_enter_saves_escape_cancels_and_other_tabs_follow(page: Page, site: str):
    log_in(page, site)
    send(page, "Plan a week in Lisbon")
    page.wait_for_url(f"{site}/c/*/")
    expect(page.locator('[data-role="assistant"]').last).to_have_attribute("data-status", "complete")
    other = page.context.new_page()
    other.goto(page.url)
    expect(other.locator("#chat")).to_have_attribute("data-connection", "open")

    page.get_by_role("button", name="Rename").click()
    field = page.get_by_label("Conversation title")
    expect(field).to_be_focused()
    field.fill("Lisbon trip")
    field.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Lisbon trip")
    expect(page).to_have_title("Lisbon trip · Chat")
    expect(page.get_by_role("button", name="Rename")).to_be_focused()
    sidebar = page.get_by_role("navigation", name="Your conversations")
    expect(sidebar.get_by_role("link", name="Lisbon trip")).to_have_attribute("aria-current", "page")
    # The other tab shows it without a reload.
    expect(other.get_by_role("heading", level=1)).to_have_text("Lisbon trip")
    expect(other).to_have_title("Lisbon trip · Chat")
    expect(
        other.get_by_role("navigation", name="Your conversations").get_by_role("link", name="Lisbon trip")
    ).to_be_visible()

    page.get_by_role("button", name="Rename").click()
    field.fill("Never saved")
    field.press("Escape")
    expect(field).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_have_text("Lisbon trip")
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Lisbon trip")

    page.get_by_role("button", name="Rename").click()
    field.fill("   ")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#rename-error")).to_have_text("A title cannot be empty.")
    other.close()


def test_delete_asks_first_then_every_page_on_it_says_it_was_deleted(page: Page, site: str):
    log_in(page, site)
    send(page, "A conversation to delete")
    page.wait_for_url(f"{site}/c/*/")
    address = page.url
    expect(page.locator('[data-role="assistant"]').last).to_have_attribute("data-status", "complete")
    other = page.context.new_page()
    other.goto(address)
    expect(other.locator("#chat")).to_have_attribute("data-connection", "open")

    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete this conversation?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.reload()  # still there
    expect(page.get_by_role("heading", level=1)).to_have_text("A conversation to delete")

    page.get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{site}/")
    sidebar = page.get_by_role("navigation", name="Your conversations")
    expect(sidebar.get_by_role("link", name="A conversation to delete")).to_have_count(0)

    expect(other.get_by_role("alert")).to_have_text("This conversation was deleted.")
    other.get_by_role("link", name="New chat").last.click()
    other.wait_for_url(f"{site}/")
    assert other.goto(address).status == 404
    other.close()
