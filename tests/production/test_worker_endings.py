"""A worker that dies or is told to stop: its replies still end, recorded, and the other worker shows it."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.dom import rendered, visible_text
from tests.production.support import (
    CLOSE_RESYNC,
    Page,
    Site,
    eventually,
    full_reply,
    get_page,
    new_chat_status,
    reply_in_page,
    start_conversation,
)

pytestmark = [pytest.mark.production, pytest.mark.live]

LEASE = 2.0  # CHAT_LEASE_SECONDS of every worker here
SWEEP = LEASE / 2  # CHAT_SWEEP_SECONDS (its default: half the lease)
LONG = "demo?tokens=400&tps=20"  # 20 s: never over before the test is done with it


async def interrupted_on(page: Page, site: Site, conversation: str, reply_id: int) -> Page:
    """The page learned the reply was interrupted: from its ending, or by a resync and a fresh snapshot."""
    if page.closed:
        assert page.close_code == CLOSE_RESYNC, f"the socket closed with {page.close_code}, not a resync"
        page = await Page.open(page.worker, conversation, site.cookies)
    assert page.statuses[reply_id] == "interrupted"
    return page


async def test_killed_worker_reply_is_marked_interrupted_with_its_checkpoint(site):
    a, b, db = site.a, site.b, site.db
    text = "Keep going until the worker dies"
    conversation = await start_conversation(a, site.cookies, text, LONG)
    (reply,) = await db.replies(conversation)
    reply_id = reply["id"]
    page_b = await Page.open(b, conversation, site.cookies)
    await page_b.wait(lambda: page_b.deltas.get(reply_id, 0) >= 3, within=10, what="deltas relayed to B")
    await db.wait_reply(reply_id, lambda r: r["content"], within=5, what="a first checkpoint")

    a.kill()
    killed_at = time.monotonic()
    at_kill = await db.reply(reply_id)
    assert at_kill["status"] == "streaming"

    await page_b.wait_ending_or_close(reply_id, within=LEASE + SWEEP + 4)
    noticed_after = time.monotonic() - killed_at
    seen_live = page_b.texts[reply_id]
    page_b = await interrupted_on(page_b, site, conversation, reply_id)
    assert noticed_after <= LEASE + SWEEP + 2.5, f"interrupted only {noticed_after:.1f} s after the kill"

    row = await db.reply(reply_id)
    saved = row["content"]
    assert row["status"] == "interrupted" and row["worker"] == ""
    assert saved, "the interrupted reply lost the text of its checkpoints"
    assert saved.startswith(at_kill["content"])
    assert full_reply(text, 400).startswith(saved)
    shown_live = visible_text(seen_live)
    assert shown_live.startswith(visible_text(rendered(saved)).rstrip()), (
        "the checkpoint holds text no page was sent"
    )
    assert page_b.texts[reply_id] == rendered(saved), "B's page does not show the saved text"

    page = await get_page(b, site.cookies, conversation)
    assert page.status_code == 200
    drawn = reply_in_page(page.text, reply_id)
    assert drawn is not None and (drawn.status, drawn.text) == ("interrupted", rendered(saved))
    assert "This reply was interrupted" in page.text
    await page_b.close()


async def test_periodic_sweep_ends_a_dead_workers_reply_with_no_page_open(site):
    a, b, db = site.a, site.b, site.db
    # B's first request is the new-chat form, not a socket: its background jobs start from there.
    warm_up = await start_conversation(b, site.cookies, "A quick one on B", "demo?tokens=2&tps=0")
    (quick,) = await db.replies(warm_up)
    await db.wait_reply(quick["id"], lambda r: r["status"] == "complete", within=10, what="B's reply")
    conversation = await start_conversation(a, site.cookies, "Nobody is watching", LONG)
    (reply,) = await db.replies(conversation)
    await db.wait_reply(reply["id"], lambda r: r["content"], within=5, what="a first checkpoint")

    a.kill()
    # No page opens the conversation (that would sweep it): only B's periodic sweep can end it.
    row = await db.wait_reply(
        reply["id"],
        lambda r: r["status"] != "streaming",
        within=LEASE + SWEEP + 3,
        what="B's periodic sweep to mark the dead worker's reply",
    )
    assert row["status"] == "interrupted" and row["content"]


async def test_sigterm_lets_a_short_reply_finish_before_the_worker_exits(site):
    a, b, db = site.a, site.b, site.db
    grace = 5.0  # CHAT_SHUTDOWN_GRACE_SECONDS of the common settings
    text = "Finish me before you go"
    conversation = await start_conversation(a, site.cookies, text, "demo?tokens=40&tps=20")
    (reply,) = await db.replies(conversation)
    reply_id = reply["id"]
    page_b = await Page.open(b, conversation, site.cookies)
    await page_b.wait(lambda: page_b.deltas.get(reply_id, 0) >= 2, within=10, what="deltas relayed to B")

    a.terminate()
    signalled_at = time.monotonic()
    await asyncio.to_thread(a.server.wait_for, r"Shutting down: 1 replies running", 5)
    try:
        refused = await new_chat_status(a, site.cookies)
    except httpx.TransportError:
        pytest.fail("A stopped serving at once on SIGTERM, before its reply could finish")
    assert refused == 503, f"a worker shutting down started a new reply ({refused})"

    status = await asyncio.to_thread(a.wait_exit, grace + 5)
    assert status is not None, "the worker did not exit after its grace period"
    exited_after = time.monotonic() - signalled_at
    assert exited_after < grace + 2, f"the worker took {exited_after:.1f} s to exit"
    row = await db.reply(reply_id)
    assert (row["status"], row["content"]) == ("complete", full_reply(text, 40))

    await page_b.wait(lambda: reply_id in page_b.endings, within=5, what="the ending on B")
    assert page_b.endings[reply_id] == "complete"
    assert page_b.texts[reply_id] == rendered(row["content"])
    await page_b.close()


async def test_sigterm_after_grace_saves_the_reply_as_interrupted_and_exits(spawn, sim):
    grace = 1.0
    site = spawn(A={"CHAT_SHUTDOWN_GRACE_SECONDS": grace})
    a, b, db = site.a, site.b, site.db
    aborted = sim.stats.streams_aborted
    text = "Too long to finish in a second"
    conversation = await start_conversation(a, site.cookies, text, LONG)
    (reply,) = await db.replies(conversation)
    reply_id = reply["id"]
    page_b = await Page.open(b, conversation, site.cookies)
    await page_b.wait(lambda: page_b.deltas.get(reply_id, 0) >= 3, within=10, what="deltas relayed to B")

    a.terminate()
    signalled_at = time.monotonic()
    shown_at_signal = page_b.texts[reply_id]
    status = await asyncio.to_thread(a.wait_exit, grace + 10)
    assert status is not None, "the worker did not exit"
    exited_after = time.monotonic() - signalled_at
    assert grace <= exited_after < grace + 3, f"the worker exited {exited_after:.1f} s after SIGTERM"

    row = await db.reply(reply_id)
    saved = row["content"]
    assert row["status"] == "interrupted"
    assert full_reply(text, 400).startswith(saved)
    # The reply went on during the grace period ...
    shown = visible_text(shown_at_signal).rstrip()
    assert visible_text(rendered(saved)).startswith(shown) and len(visible_text(rendered(saved))) > len(shown)
    await page_b.wait_ending_or_close(reply_id, within=5)
    # ... and all of it was saved, not only its last checkpoint: exactly what B was sent.
    assert page_b.texts[reply_id] == rendered(saved)
    page_b = await interrupted_on(page_b, site, conversation, reply_id)
    assert page_b.texts[reply_id] == rendered(saved)

    async def upstream_closed() -> bool:
        return sim.stats.streams_aborted == aborted + 1

    await eventually(upstream_closed, within=2, what="the simulator to see the stream closed")
    await page_b.close()
