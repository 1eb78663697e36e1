"""In Chromium: axe-core finds no WCAG A/AA violation on any page, in either theme; keyboard and
screen-reader behaviour of a streaming reply (a busy log entry, one announcement at its end)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, send, start_site
from tests.browser.test_chat_flow import choose_model

pytestmark = [pytest.mark.live, pytest.mark.browser]

# axe-core, vendored for the tests only (tests/browser/vendor/LICENSE). Evaluated through the
# DevTools protocol, which the page's Content-Security-Policy does not govern.
AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
RUN_AXE = """async tags => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return result.violations.map(v => ({
    rule: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
  }));
}"""
THEMES = ["light", "dark"]
OTHER = {"light": "dark", "dark": "light"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=400, reply_tokens=60) as url:
        yield url


def violations(page: Page, *, allow: tuple[str, ...] = ()) -> list[dict]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    return [found for found in page.evaluate(RUN_AXE, AXE_TAGS) if found["rule"] not in allow]


def assert_accessible(page: Page, where: str, *, allow: tuple[str, ...] = ()) -> None:
    found = violations(page, allow=allow)
    assert not found, f"axe on {where}:\n" + json.dumps(found, indent=1)


def choose_theme(page: Page, theme: str) -> None:
    """The user's choice, made with the Theme button against a system set to the other theme."""
    page.emulate_media(color_scheme=OTHER[theme])
    html = page.locator("html")
    if html.get_attribute("data-theme") != theme:
        with page.expect_response(lambda response: "/preferences/theme/" in response.url):
            page.get_by_role("button", name="Theme", exact=True).click()
    expect(html).to_have_attribute("data-theme", theme)


def last_reply(page: Page):
    return page.locator('[data-role="assistant"]').last


@pytest.mark.parametrize("theme", THEMES)
def test_the_login_page_has_no_violations(page: Page, site: str, theme: str):
    page.emulate_media(color_scheme=theme)
    page.goto(f"{site}/accounts/login/")
    assert_accessible(page, f"the login page ({theme})")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Sign in").click()  # refused: the error shows
    expect(page.get_by_role("alert")).to_be_visible()
    assert_accessible(page, f"the login page with an error ({theme})")


@pytest.mark.parametrize("theme", THEMES)
def test_every_signed_in_page_has_no_violations(page: Page, site: str, theme: str):
    log_in(page, site)
    choose_theme(page, theme)
    assert_accessible(page, f"the new-chat page ({theme})")

    choose_model(page, "demo?tokens=150&tps=400&style=markdown")
    send(page, "Show me some Markdown")
    page.wait_for_url(f"{site}/c/*/")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(last_reply(page).locator(".code-block .k").first).to_be_visible()
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", theme)
    assert_accessible(page, f"the chat page with a finished Markdown reply ({theme})")

    page.get_by_text("Conversation settings").click()
    expect(page.get_by_role("button", name="Save settings")).to_be_visible()
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_label("Conversation title")).to_be_focused()
    # While renaming, the heading stays for screen readers; its field shows instead.
    assert_accessible(
        page,
        f"the chat page with its settings and rename form open ({theme})",
    )
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert_accessible(page, f"the chat page with the delete dialog open ({theme})")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()

    page.goto(f"{site}/search/?q=Markdown")
    expect(page.locator(".search-page-results a").first).to_be_visible()
    assert_accessible(page, f"the search results page ({theme})")

    page.goto(f"{site}/import/")
    assert_accessible(page, f"the import page ({theme})")
    page.get_by_label("Search conversations").fill("simulator")
    expect(page.locator("#search-results a").first).to_be_visible()
    assert_accessible(page, f"the sidebar's live search results ({theme})")


@pytest.mark.parametrize("theme", THEMES)
def test_the_phone_layout_with_the_drawer_open_has_no_violations(page: Page, site: str, theme: str):
    page.set_viewport_size({"width": 375, "height": 700})
    log_in(page, site)
    page.get_by_role("button", name="Conversations", exact=True).click()
    choose_theme(page, theme)
    assert_accessible(page, f"the phone layout with the drawer open ({theme})")


# Installed before any page script: every text the reply announcer (#reply-status) is given.
RECORD_ANNOUNCEMENTS = """
window.__announced = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("reply-status");
  if (!status) return;
  new MutationObserver(() => { if (status.textContent) window.__announced.push(status.textContent); })
    .observe(status, {childList: true, characterData: true, subtree: true});
});
"""
# The nearest live region around an element, if any (role=log is live unless aria-live="off").
LIVE_ANCESTOR = """element => {
  for (let node = element; node; node = node.parentElement) {
    const live = node.getAttribute("aria-live");
    const role = node.getAttribute("role");
    if (live === "off") return null;
    if (live || ["log", "status", "alert", "marquee", "timer"].includes(role)) return node.id || node.tagName;
  }
  return null;
}"""


def announced(page: Page) -> list[str]:
    return page.evaluate("window.__announced")


def test_a_streaming_reply_is_busy_and_silent_and_its_ending_is_announced_once(page: Page, site: str):
    page.add_init_script(RECORD_ANNOUNCEMENTS)
    log_in(page, site)
    expect(page.get_by_role("log", name="Transcript")).to_be_attached()
    choose_model(page, "demo?tokens=120&tps=60")
    send(page, "Tell me something slowly")
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(reply).to_have_attribute("aria-busy", "true")
    assert reply.locator(".message-body").evaluate(LIVE_ANCESTOR) is None  # no word is read out
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(reply).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#reply-status")).to_have_text("Reply finished.")
    assert announced(page) == ["Reply finished."]

    # Esc from outside any field stops the next reply; that is announced too.
    choose_model(page, "demo?tokens=400&tps=20")
    send(page, "And now something long")
    expect(last_reply(page)).to_have_attribute("data-status", "streaming")
    page.locator("#message-text").blur()
    page.keyboard.press("Escape")
    expect(last_reply(page)).to_have_attribute("data-status", "stopped")
    expect(page.locator("#reply-status")).to_have_text("Reply stopped.")

    choose_model(page, "demo?tokens=30&tps=200&fault=error-event-after-5")
    send(page, "This one fails")
    expect(last_reply(page)).to_have_attribute("data-status", "error", timeout=20_000)
    expect(page.locator("#reply-status")).to_contain_text("Reply failed: ")
    assert announced(page)[1:] == ["Reply stopped.", page.locator("#reply-status").text_content()]


def test_the_keyboard_shortcuts(page: Page, site: str):
    log_in(page, site)
    send(page, "A first question")
    page.wait_for_url(f"{site}/c/*/")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    composer = page.get_by_label("Message", exact=True)
    search = page.get_by_label("Search conversations")

    page.keyboard.type("a/b")  # "/" while typing is text
    expect(composer).to_have_value("a/b")
    composer.blur()
    page.keyboard.press("/")
    expect(search).to_be_focused()
    page.keyboard.press("Alt+Shift+M")
    expect(composer).to_be_focused()
    page.keyboard.press("Alt+Shift+C")
    expect(page.locator('#conversation-list a[aria-current="page"]')).to_be_focused()
    page.keyboard.press("Alt+Shift+S")
    expect(search).to_be_focused()
    page.keyboard.press("Alt+Shift+N")
    page.wait_for_url(f"{site}/")
    expect(page.get_by_role("heading", name="New chat")).to_be_attached()


@pytest.mark.parametrize("theme", THEMES)
def test_every_control_shows_keyboard_focus(page: Page, site: str, theme: str):
    log_in(page, site)
    choose_theme(page, theme)
    send(page, "Something to show")
    page.wait_for_url(f"{site}/c/*/")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    page.locator("body").focus()
    seen = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => { const e = document.activeElement; const s = getComputedStyle(e);
                       return [e.outerHTML.slice(0, 80), s.outlineStyle, parseFloat(s.outlineWidth)]; }"""
        )
        if focused[0].startswith("<body"):
            continue  # past the last control (the browser's own UI) before starting again
        seen.add(focused[0])
        assert focused[1] != "none" and focused[2] >= 2, f"no visible focus on {focused[0]}"
    assert len(seen) >= 15  # the walk went through the sidebar and the conversation
