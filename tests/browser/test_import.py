"""In Chromium: the import page, reached from the sidebar, brings another product's chats along."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, start_site

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
