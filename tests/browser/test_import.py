"""In Chromium: the import page, reached from the sidebar, brings another product's chats along."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from bench.imports import write_open_webui_export
from tests.browser.conftest import log_in, send, start_site

pytestmark = [pytest.mark.live, pytest.mark.browser]

SAMPLES = Path(__file__).parent.parent / "importer_samples"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=200, reply_tokens=12) as url:
        yield url


def test_a_chatgpt_export_is_imported_listed_and_opens_on_the_branch_it_showed(page: Page, site: str):
    log_in(page, site)
    page.get_by_role("link", name="Import", exact=True).click()
    page.get_by_label("Import conversations").set_input_files(str(SAMPLES / "chatgpt-conversations.json"))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Imported 2 conversations (8 messages).")
    sidebar = page.get_by_role("navigation", name="Your conversations")
    sidebar.get_by_role("link", name="Reverse a list").click()
    page.wait_for_url(f"{site}/c/*/")
    replies = page.locator('[data-role="assistant"]')
    expect(replies.locator("pre code").first).to_be_visible()  # code, highlighted
    expect(page.locator('[data-role="user"]').last.get_by_label("Version 2 of 2")).to_be_visible()  # the edit


def test_a_broken_file_says_what_is_wrong_and_imports_nothing(page: Page, site: str, tmp_path):
    log_in(page, site)
    broken = tmp_path / "export.json"
    broken.write_text('[{"chat": {"history": {"messages": {}')
    page.goto(f"{site}/import/")
    sidebar = page.get_by_role("navigation", name="Your conversations").get_by_role("link")
    before = sidebar.count()
    page.get_by_label("Import conversations").set_input_files(str(broken))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-form")).to_contain_text("The file is not valid JSON")
    expect(sidebar).to_have_count(before)


def import_file(page: Page, site: str, path: Path) -> None:
    page.goto(f"{site}/import/")
    page.get_by_label("Import conversations").set_input_files(str(path))
    page.get_by_role("button", name="Import", exact=True).click()


def download_export(page: Page, into: Path) -> dict:
    """The conversation on screen, downloaded through its JSON export link in the settings panel."""
    page.get_by_text("Conversation settings").click()
    with page.expect_download() as download:
        page.locator(".export-links").get_by_role("link", name="JSON").click()
    path = into / download.value.suggested_filename
    download.value.save_as(path)
    (record,) = json.loads(path.read_text(encoding="utf-8"))
    return record


def without_ids(record: dict) -> dict:
    """A record with the database's ids replaced by places: ids must differ, everything else not."""
    place = {m["id"]: n for n, m in enumerate(record["messages"])}
    messages = [{**m, "id": place[m["id"]], "parent": place.get(m["parent"])} for m in record["messages"]]
    return {**record, "id": None, "messages": messages, "current_message": place[record["current_message"]]}


def test_a_downloaded_export_imports_back_as_the_same_conversation(page: Page, site: str, tmp_path):
    log_in(page, site)
    send(page, "Round trip, please")
    page.wait_for_url(f"{site}/c/*/")
    expect(page.locator('[data-role="assistant"]').last).to_have_attribute(
        "data-status", "complete", timeout=20_000
    )
    original_url = page.url
    before = download_export(page, tmp_path)

    import_file(page, site, next(tmp_path.glob("*.json")))
    expect(page.get_by_role("status")).to_have_text("Imported 1 conversation (2 messages).")
    links = page.get_by_role("navigation", name="Your conversations").get_by_role(
        "link", name=before["title"]
    )
    expect(links).to_have_count(2)
    copy_url = next(
        href for href in (links.nth(n).get_attribute("href") for n in range(2)) if href not in original_url
    )
    page.goto(f"{site}{copy_url}")
    expect(page.locator('[data-role="user"] .message-body')).to_have_text("Round trip, please")
    (tmp_path / "copy").mkdir()
    after = download_export(page, tmp_path / "copy")
    assert after["id"] != before["id"]
    assert without_ids(after) == without_ids(before)


def test_the_open_webui_sample_is_imported_and_each_chat_shows_its_messages(page: Page, site: str):
    log_in(page, site)
    import_file(page, site, SAMPLES / "open-webui-0.12.4-export.json")
    expect(page.get_by_role("status")).to_have_text("Imported 3 conversations (8 messages).")
    sidebar = page.get_by_role("navigation", name="Your conversations")
    sidebar.get_by_role("link", name="Show me some Markdown, please.").first.click()
    page.wait_for_url(f"{site}/c/*/")
    expect(page.locator('[data-role="user"] .message-body')).to_have_text(
        ["Show me some Markdown, please.", "And some code — ünïcödé too 😀"]
    )
    expect(page.locator('[data-role="assistant"]')).to_have_count(2)
    expect(page.locator('[data-role="assistant"] h1').first).to_have_text("Notes")  # Markdown, rendered
    expect(page.locator(".versions")).to_have_count(0)  # its chats are straight: one version each
    sidebar.get_by_role("link", name="Think first, then greet me.").first.click()
    expect(page.locator('[data-role="assistant"] .message-body').last).to_contain_text(
        "Hello! How can I help"
    )
    sidebar.get_by_role("link", name="A table and a function?").first.click()
    expect(page.locator('[data-role="assistant"] table').first).to_be_visible()


def test_the_chatgpt_sample_shows_both_versions_of_the_edited_message(page: Page, site: str):
    log_in(page, site)
    import_file(page, site, SAMPLES / "chatgpt-conversations.json")
    expect(page.get_by_role("status")).to_have_text("Imported 2 conversations (8 messages).")
    page.get_by_role("navigation", name="Your conversations").get_by_role(
        "link", name="Reverse a list"
    ).first.click()
    page.wait_for_url(f"{site}/c/*/")
    edited = page.locator('[data-role="user"]').last
    expect(edited.get_by_label("Version 2 of 2")).to_be_visible()
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("same list printed in reverse")
    edited.get_by_role("button", name="Previous version").click()  # the other branch
    expect(page.locator('[data-role="user"]').last.get_by_label("Version 1 of 2")).to_be_visible()
    expect(page.locator('[data-role="user"] .message-body').last).to_have_text("Run it for me.")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("<!doctype html><html></html>", "The file is a web page, not JSON"),
        ('{"notes": []}', "This file is not an export from Open WebUI or ChatGPT"),
    ],
)
def test_a_foreign_file_is_refused_with_nothing_imported(page: Page, site: str, tmp_path, content, message):
    log_in(page, site)
    path = tmp_path / "upload.json"
    path.write_text(content)
    page.goto(f"{site}/import/")
    sidebar = page.get_by_role("navigation", name="Your conversations").get_by_role("link")
    before = sidebar.count()
    page.get_by_label("Import conversations").set_input_files(str(path))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-form .errorlist")).to_contain_text(message)
    expect(page.get_by_role("status")).to_have_count(0)
    expect(sidebar).to_have_count(before)


PROGRESS_CONVERSATIONS = 400

# Every text the progress line shows, kept as it changes (the line is rewritten a few times a second).
RECORD_PROGRESS = """() => {
  window.progressTexts = [];
  const line = document.getElementById("import-progress-text");
  new MutationObserver(() => window.progressTexts.push(line.textContent))
    .observe(line, {childList: true, characterData: true, subtree: true});
}"""


def test_a_larger_file_shows_its_upload_then_the_conversations_imported(page: Page, site: str, tmp_path):
    path = tmp_path / "large-export.json"
    size = write_open_webui_export(path, conversations=PROGRESS_CONVERSATIONS, target_bytes=4_000_000)
    log_in(page, site)
    page.goto(f"{site}/import/")
    expect(page.locator("#import-progress")).to_be_hidden()
    page.evaluate(RECORD_PROGRESS)
    page.get_by_label("Import conversations").set_input_files(str(path))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(
        f"Imported {PROGRESS_CONVERSATIONS} conversations ({PROGRESS_CONVERSATIONS * 9} messages)."
    )
    expect(page.locator("#import-progress")).to_be_hidden()  # the result took its place
    texts = page.evaluate("window.progressTexts")
    assert texts[0] == "Uploading…"
    assert any(re.fullmatch(r"Uploading… \d+%|Uploaded; checking the file…", text) for text in texts)
    writing = [re.fullmatch(r"Imported (\d+) of (\d+) conversations…", text) for text in texts]
    counts = [int(match[1]) for match in writing if match and match[2] == str(PROGRESS_CONVERSATIONS)]
    assert counts and counts == sorted(counts)
    assert size > 3_000_000
