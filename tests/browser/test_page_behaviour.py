"""In Chromium: the page follows a reply, offers "Jump to latest", fits the composer and keeps it ready."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, send, start_site

pytestmark = [pytest.mark.live, pytest.mark.browser]

# Wide enough for the two-column layout (the single column starts at 700 px), short enough that
# a reply overflows the message list within a second.
VIEWPORT = {"width": 960, "height": 520}
# About 2,100 characters over four seconds: it fills the list several times and is still
# streaming while a test scrolls.
LONG_REPLY = "demo?tokens=400&tps=100"

END_DISTANCE = """() => { const list = document.getElementById("messages");
                         return list.scrollHeight - list.scrollTop - list.clientHeight; }"""
FOLLOWING_OVERFLOWED_REPLY = """() => {
    const list = document.getElementById("messages");
    const reply = [...document.querySelectorAll('[data-role="assistant"]')].pop();
    return reply && reply.dataset.status === "streaming"
        && list.scrollHeight > 2 * list.clientHeight
        && list.scrollHeight - list.scrollTop - list.clientHeight < 2; }"""
REPLY_LENGTH = """() => [...document.querySelectorAll('[data-role="assistant"] .message-body')]
                         .pop().textContent.length"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with start_site(tmp_path_factory, tokens_per_second=200, reply_tokens=12) as url:
        yield url


def choose_model(page: Page, model: str) -> None:
    """Pick a model id the server's list does not carry (the simulator reads its options from it)."""
    page.evaluate(
        """m => { const s = document.querySelector('#model-select');
                  s.add(new Option(m, m)); s.value = m; }""",
        model,
    )


def start_long_reply(page: Page, site: str) -> None:
    """A conversation whose reply is streaming, has overflowed the list twice over, and is followed."""
    page.set_viewport_size(VIEWPORT)
    log_in(page, site)
    choose_model(page, LONG_REPLY)
    send(page, "Write at length")
    page.wait_for_url(f"{site}/c/*/")
    page.wait_for_function(FOLLOWING_OVERFLOWED_REPLY)


def scroll_up(page: Page) -> float:
    """Turn the mouse wheel over the message list, as a reader does; return the new scrollTop."""
    before = page.evaluate("() => document.getElementById('messages').scrollTop")
    page.locator("#messages").hover()
    page.mouse.wheel(0, -400)
    page.wait_for_function(
        "before => document.getElementById('messages').scrollTop < before - 200", arg=before
    )
    return page.evaluate("() => document.getElementById('messages').scrollTop")


def wait_for_more_text(page: Page, characters: int = 150) -> None:
    page.wait_for_function(
        f"length => ({REPLY_LENGTH})() > length + {characters}", arg=page.evaluate(REPLY_LENGTH)
    )


def jump_button(page: Page):
    return page.get_by_role("button", name="Jump to latest", exact=True)


def height(page: Page) -> float:
    return page.get_by_label("Message").evaluate("area => area.getBoundingClientRect().height")


def test_a_streaming_reply_is_followed_while_the_reader_is_at_the_bottom(page: Page, site: str):
    start_long_reply(page, site)  # followed while streaming
    expect(page.locator('[data-role="assistant"]').last).to_have_attribute(
        "data-status", "complete", timeout=20_000
    )
    page.wait_for_function(f"() => ({END_DISTANCE})() < 2")  # and to its last line
    expect(jump_button(page)).to_be_hidden()


def test_socket_frames_only_mark_the_view_dirty_and_one_animation_frame_reads_the_layout(
    page: Page, site: str
):
    log_in(page, site)
    reads = page.evaluate(
        """() => new Promise(resolve => {
            const list = document.getElementById("messages");
            let reads = 0;
            for (const name of ["scrollHeight", "scrollTop", "clientHeight"]) {
                const inherited = Object.getOwnPropertyDescriptor(Element.prototype, name);
                Object.defineProperty(list, name, {
                    configurable: true,
                    get() { reads++; return inherited.get.call(this); },
                    set: inherited.set && function (value) { inherited.set.call(this, value); },
                });
            }
            for (let i = 0; i < 50; i++) document.dispatchEvent(new CustomEvent("htmx:wsAfterMessage"));
            const during = reads;
            requestAnimationFrame(() => requestAnimationFrame(() => resolve({ during, after: reads })));
        })"""
    )
    assert reads["during"] == 0  # fifty frames in one task: no layout read while they arrive
    assert 0 < reads["after"] <= 5  # one callback: scrollTop, scrollHeight, clientHeight (and a scroll)


def test_scrolling_up_stops_following_and_offers_jump_to_latest(page: Page, site: str):
    start_long_reply(page, site)
    expect(jump_button(page)).to_be_hidden()
    top = scroll_up(page)
    expect(jump_button(page)).to_be_visible()
    wait_for_more_text(page)
    assert page.evaluate("() => document.getElementById('messages').scrollTop") <= top + 1  # not pulled down
    assert page.evaluate(END_DISTANCE) > 200
    expect(page.locator('[data-role="assistant"]').last).to_have_attribute("data-status", "streaming")


def test_jump_to_latest_scrolls_to_the_end_hides_and_follows_again(page: Page, site: str):
    start_long_reply(page, site)
    scroll_up(page)
    jump_button(page).click()
    page.wait_for_function(f"() => ({END_DISTANCE})() < 2")
    expect(jump_button(page)).to_be_hidden()
    wait_for_more_text(page)
    page.wait_for_function(FOLLOWING_OVERFLOWED_REPLY)  # more text, and still at its end
    expect(jump_button(page)).to_be_hidden()


def test_the_composer_grows_with_its_text_up_to_a_cap_then_scrolls(page: Page, site: str):
    page.set_viewport_size(VIEWPORT)
    log_in(page, site)
    composer = page.get_by_label("Message")
    initial = height(page)

    composer.fill("\n".join(f"line {n}" for n in range(6)))
    six_lines = height(page)
    assert six_lines > initial + 30

    composer.fill("\n".join(f"line {n}" for n in range(80)))
    assert height(page) == pytest.approx(0.4 * VIEWPORT["height"], abs=1)  # the cap: 40% of the window
    assert composer.evaluate("area => area.scrollHeight > area.clientHeight")  # the rest scrolls

    composer.fill("one line")
    assert height(page) == pytest.approx(initial, abs=1)


def test_send_is_disabled_while_the_composer_is_blank(page: Page, site: str):
    log_in(page, site)
    composer = page.get_by_label("Message")
    send_button = page.get_by_role("button", name="Send")
    expect(send_button).to_be_disabled()
    composer.fill("  \n\t ")
    expect(send_button).to_be_disabled()
    composer.fill("A question")
    expect(send_button).to_be_enabled()
    composer.fill("")
    expect(send_button).to_be_disabled()


def test_enter_in_a_blank_composer_sends_nothing(page: Page, site: str):
    sent: list[str | bytes] = []
    page.on("websocket", lambda socket: socket.on("framesent", lambda payload: sent.append(payload)))
    log_in(page, site)
    send(page, "Only this one")
    page.wait_for_url(f"{site}/c/*/")
    expect(page.locator('[data-role="assistant"]').last).to_have_attribute("data-status", "complete")
    expect(page.locator("#chat")).to_have_attribute("data-connection", "open")
    before = len(sent)

    composer = page.get_by_label("Message")
    composer.fill("   ")
    composer.press("Enter")
    composer.fill("")
    composer.press("Enter")
    page.wait_for_timeout(300)  # proving that nothing goes out: a short wait is the only way
    assert sent[before:] == []
    expect(page.locator('[data-role="user"]')).to_have_count(1)
    expect(page.locator("#composer-notice")).to_have_text("")


def test_after_sending_the_composer_is_empty_short_and_focused(page: Page, site: str):
    page.set_viewport_size(VIEWPORT)
    log_in(page, site)
    composer = page.get_by_label("Message")
    initial = height(page)
    send(page, "First, through the new-chat form")
    page.wait_for_url(f"{site}/c/*/")
    expect(composer).to_be_focused()
    expect(page.locator('[data-role="assistant"]').last).to_have_attribute("data-status", "complete")

    composer.fill("\n".join(f"line {n}" for n in range(6)))
    assert height(page) > initial + 30
    page.get_by_role("button", name="Send").click()  # focus leaves the composer for the button
    expect(page.locator('[data-role="user"]')).to_have_count(2)
    expect(composer).to_have_value("")  # stored, over the socket
    expect(composer).to_be_focused()
    assert height(page) == pytest.approx(initial, abs=1)


def test_finished_messages_are_contained_and_the_streaming_one_is_not(page: Page, site: str):
    log_in(page, site)
    choose_model(page, "demo?tokens=60&tps=30")
    send(page, "Contain yourself")
    page.wait_for_url(f"{site}/c/*/")
    # In one evaluation: the page swaps the reply's element when the socket connects.
    page.wait_for_function(
        """() => { const reply = [...document.querySelectorAll('[data-role="assistant"]')].pop();
                   const user = [...document.querySelectorAll('[data-role="user"]')].pop();
                   return reply && reply.dataset.status === "streaming"
                       && getComputedStyle(reply).contentVisibility === "visible"
                       && getComputedStyle(user).contentVisibility === "auto"; }"""
    )
    reply = page.locator('[data-role="assistant"]').last
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(reply).to_have_css("content-visibility", "auto")

    # Still the layout it was: the user's message a bubble at the right, at most 80% wide.
    bubble = page.locator('[data-role="user"]').last.evaluate(
        """element => { const list = document.getElementById("messages").getBoundingClientRect();
                        const box = element.getBoundingClientRect();
                        return { gap: list.right - box.right, share: box.width / list.width }; }"""
    )
    assert bubble["gap"] < 20 and bubble["share"] < 0.8


def test_a_fast_reply_is_written_in_batches_and_its_frames_bypass_htmx(page: Page, site: str):
    frames: list[str] = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(frame)))
    log_in(page, site)
    page.evaluate(
        """() => {
            window.__writes = 0;
            window.__htmxFrames = 0;
            document.addEventListener("htmx:wsBeforeMessage", () => window.__htmxFrames++);
            // One callback per task that changed the list: per write, however many frames it held.
            new MutationObserver(() => window.__writes++).observe(
                document.getElementById("messages"), {childList: true, subtree: true, characterData: true});
        }"""
    )
    choose_model(page, "demo?tokens=1500&tps=500&style=markdown")
    send(page, "Quickly, please")
    page.wait_for_function(
        "() => { const r = [...document.querySelectorAll('[data-role=\"assistant\"]')].pop();"
        " return !!r && r.dataset.status === 'complete'; }"
    )
    reply_frames = [f for f in frames if isinstance(f, str) and f.startswith(("<span id=m-", "<div id=m-"))]
    writes, htmx_frames = page.evaluate("() => [window.__writes, window.__htmxFrames]")
    assert len(reply_frames) > 60  # the server sends a frame about every 30 ms
    assert htmx_frames < 12  # the message, the state, the ending: not the reply's text
    assert writes < 0.7 * len(reply_frames)  # at most one write per 80 ms
