"""In Chromium: light and dark themes remembered per user, and the chat page on a 375 px phone."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.conftest import CHROMIUM_FLAGS, log_in, start_site

pytestmark = [pytest.mark.live, pytest.mark.browser]

PHONE = {"width": 375, "height": 700}
COLUMNS = 24
WIDE_REPLY = "\n\n".join(
    [
        "## A reply wider than a phone",
        "Some prose that wraps as it should. " * 12,
        "```python\nsettings = {" + ", ".join(f'"key_{i}": {i}' for i in range(40)) + "}\n```",
        "| " + " | ".join(f"Column {i}" for i in range(COLUMNS)) + " |\n"
        "|" + "---|" * COLUMNS + "\n"
        "| " + " | ".join(f"value_{i}" for i in range(COLUMNS)) + " |",
        "An_unbroken_identifier_" * 12,
    ]
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium as a browser of separate contexts: two contexts share no cookies or storage."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A tab in a fresh context (as if in a browser of its own)."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=400, reply_tokens=12) as url:
        yield url


def import_wide_conversation(page: Page, site: str, tmp_path: Path) -> None:
    """A conversation whose reply holds a wide code block and a wide table, opened (through Import)."""
    export = tmp_path / "wide.json"
    user = {"id": 1, "role": "user", "content": "Show me something wide"}
    reply = {"id": 2, "parent": 1, "role": "assistant", "content": WIDE_REPLY, "model": "demo"}
    record = {
        "format": "chat-export/1",
        "title": "Wide things",
        "messages": [user, reply],
        "current_message": 2,
    }
    export.write_text(json.dumps([record]))
    page.goto(f"{site}/import/")
    page.get_by_label("Import conversations").set_input_files(str(export))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Imported 1 conversation")
    page.goto(
        site
        + (page.locator("#conversation-list a", has_text="Wide things").first.get_attribute("href") or "")
    )
    expect(page.locator('[data-role="assistant"] table')).to_be_visible()


def theme_button(page: Page):
    return page.get_by_role("button", name="Theme", exact=True)


def press_theme(page: Page) -> None:
    """Press Theme and wait until the choice is stored."""
    with page.expect_response(lambda response: "/preferences/theme/" in response.url) as answer:
        theme_button(page).click()
    assert answer.value.status == 204


def store_theme(page: Page, site: str, theme: str) -> None:
    """Store the signed-in user's theme as the Theme form does, then show the page again."""
    token = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "csrftoken")
    response = page.request.post(
        f"{site}/preferences/theme/",
        form={"theme": theme},
        headers={"X-CSRFToken": token, "HX-Request": "true"},
    )
    assert response.status == 204
    page.reload()


DARK_BG, LIGHT_BG = "rgb(23, 23, 26)", "rgb(247, 247, 248)"


def test_the_page_follows_the_system_until_the_user_chooses(page: Page, site: str):
    page.emulate_media(color_scheme="dark")
    log_in(page, site)
    store_theme(page, site, "system")
    expect(page.locator("html")).not_to_have_attribute("data-theme", re.compile(".*"))
    expect(page.locator("body")).to_have_css("background-color", DARK_BG)
    page.emulate_media(color_scheme="light")
    expect(page.locator("body")).to_have_css("background-color", LIGHT_BG)


def test_the_theme_is_remembered_across_reloads_and_other_browsers(page: Page, site: str, browser: Browser):
    page.emulate_media(color_scheme="light")
    log_in(page, site)
    store_theme(page, site, "system")
    press_theme(page)
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.locator("body")).to_have_css("background-color", DARK_BG)
    page.reload()
    # The chosen dark theme wins over a light system, code colours included.
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.locator("body")).to_have_css("background-color", DARK_BG)

    elsewhere = browser.new_context(color_scheme="light").new_page()
    try:
        log_in(elsewhere, site)
        expect(elsewhere.locator("html")).to_have_attribute("data-theme", "dark")
        expect(elsewhere.locator("body")).to_have_css("background-color", DARK_BG)
        press_theme(elsewhere)  # and back to light from there
        expect(elsewhere.locator("body")).to_have_css("background-color", LIGHT_BG)
    finally:
        elsewhere.context.close()
    page.emulate_media(color_scheme="dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")  # wins over a dark system
    expect(page.locator("body")).to_have_css("background-color", LIGHT_BG)


def test_code_follows_the_chosen_theme(page: Page, site: str, tmp_path: Path):
    page.emulate_media(color_scheme="dark")
    log_in(page, site)
    store_theme(page, site, "system")
    import_wide_conversation(page, site, tmp_path)
    code = page.locator('[data-role="assistant"] .code-block pre').first
    keyword = page.locator('[data-role="assistant"] .code-block .p').first
    expect(code).to_have_css("background-color", "rgb(13, 17, 23)")  # the system's dark
    press_theme(page)  # the page showed dark: Theme picks light
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    expect(code).to_have_css("background-color", "rgb(246, 248, 250)")
    expect(keyword).not_to_have_css("color", "rgb(230, 237, 243)")  # not the dark style's
    press_theme(page)
    expect(code).to_have_css("background-color", "rgb(13, 17, 23)")
    expect(keyword).to_have_css("color", "rgb(230, 237, 243)")


def test_on_a_phone_the_sidebar_is_a_drawer_and_nothing_scrolls_sideways(
    page: Page, site: str, tmp_path: Path
):
    page.set_viewport_size(PHONE)
    log_in(page, site)
    import_wide_conversation(page, site, tmp_path)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide"
    # The wide parts scroll inside their own boxes.
    for part in ('[data-role="assistant"] .code-block pre', '[data-role="assistant"] table'):
        assert page.locator(part).evaluate("e => e.scrollWidth > e.clientWidth"), part
    # The composer is at the bottom of the screen.
    composer = page.locator("#composer").bounding_box()
    assert (
        composer is not None and PHONE["height"] - 4 <= composer["y"] + composer["height"] <= PHONE["height"]
    )

    sidebar = page.get_by_role("complementary", name="Conversations")
    opener = page.get_by_role("button", name="Conversations", exact=True)
    expect(sidebar).to_be_hidden()
    expect(opener).to_have_attribute("aria-expanded", "false")
    expect(opener).to_have_attribute("aria-controls", "sidebar")
    opener.click()
    expect(sidebar).to_be_visible()
    expect(opener).to_have_attribute("aria-expanded", "true")
    current = sidebar.locator('a[aria-current="page"]')
    expect(current).to_have_text("Wide things")
    expect(current).to_be_focused()  # the open conversation
    expect(page.locator("#chat")).to_have_js_property("inert", True)
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(opener).to_be_focused()
    expect(opener).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#chat")).to_have_js_property("inert", False)

    page.keyboard.press("Enter")
    page.get_by_role("button", name="Close conversations").click()
    expect(sidebar).to_be_hidden()
    expect(opener).to_be_focused()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
