"""Two Daphne workers on PostgreSQL and Redis: a reply is one stream, whichever worker a page uses."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.dom import rendered, visible_text
from tests.production.support import (
    Page,
    eventually,
    full_reply,
    get_page,
    reply_in_page,
    start_conversation,
)

pytestmark = [pytest.mark.production, pytest.mark.live]


async def test_reply_started_on_a_streams_on_b_without_gap_or_duplicate(site):
    a, b, db = site.a, site.b, site.db
    conversation = await start_conversation(a, site.cookies, "A first, quick turn", "demo?tokens=3&tps=0")
    (first,) = await db.replies(conversation)
    await db.wait_reply(first["id"], lambda r: r["status"] == "complete", within=10, what="the first reply")

    page_a = await Page.open(a, conversation, site.cookies)
    text = "Tell me how two workers share one reply"
    expected = full_reply(text, 60)
    await page_a.send(text, "demo?tokens=60&tps=20")
    await page_a.wait(lambda: page_a.new_replies({first["id"]}), within=5, what="the new reply on A")
    (reply_id,) = page_a.new_replies({first["id"]})
    await page_a.wait(lambda: page_a.deltas.get(reply_id, 0) >= 5, within=10, what="five deltas on A")

    page_b = await Page.open(b, conversation, site.cookies)
    shown_at_join = visible_text(page_b.texts[reply_id])
    assert page_b.statuses[reply_id] == "streaming"
    assert shown_at_join, "B's snapshot shows none of the text written so far"
    assert visible_text(rendered(expected)).startswith(shown_at_join.rstrip())
    assert shown_at_join != visible_text(rendered(expected))

    page = await get_page(b, site.cookies, conversation)
    assert page.status_code == 200
    drawn = reply_in_page(page.text, reply_id)
    assert drawn is not None, "B's page has no element for the reply"
    assert drawn.status == "streaming"
    assert visible_text(rendered(expected)).startswith(visible_text(drawn.text).rstrip())

    await page_b.wait(lambda: reply_id in page_b.endings, within=10, what="the ending on B")
    await page_a.wait(lambda: reply_id in page_a.endings, within=5, what="the ending on A")
    assert page_b.deltas.get(reply_id, 0) > 0, "B received no deltas after its snapshot"
    assert page_b.endings[reply_id] == page_a.endings[reply_id] == "complete"
    assert page_b.texts[reply_id] == rendered(expected)
    assert page_a.texts[reply_id] == rendered(expected)
    row = await db.reply(reply_id)
    assert (row["status"], row["finish_reason"], row["content"]) == ("complete", "stop", expected)
    assert row["worker"] == "" and row["lease_expires_at"] is None
    await page_a.close()
    await page_b.close()


async def test_stop_through_b_ends_a_reply_running_on_a(site, sim):
    a, b, db = site.a, site.b, site.db
    aborted, completed = sim.stats.streams_aborted, sim.stats.streams_completed
    text = "Stop me from the other worker"
    conversation = await start_conversation(a, site.cookies, text, "demo?tokens=200&tps=20")
    (reply,) = await db.replies(conversation)
    reply_id = reply["id"]
    page_a = await Page.open(a, conversation, site.cookies)
    page_b = await Page.open(b, conversation, site.cookies)
    await page_b.wait(lambda: page_b.deltas.get(reply_id, 0) >= 3, within=10, what="deltas relayed to B")

    await page_b.stop()
    stopped_at = time.monotonic()
    await page_b.wait(lambda: reply_id in page_b.endings, within=5, what="the ending on B")
    await page_a.wait(lambda: reply_id in page_a.endings, within=5, what="the ending on A")
    assert time.monotonic() - stopped_at < 2, "stopping took more than 2 s"
    assert page_a.endings[reply_id] == page_b.endings[reply_id] == "stopped"

    row = await db.reply(reply_id)
    expected = full_reply(text, 200)
    assert row["status"] == "stopped"
    assert row["content"] and expected.startswith(row["content"])
    assert len(row["content"]) < len(expected) / 2
    assert page_a.texts[reply_id] == page_b.texts[reply_id] == rendered(row["content"])

    async def upstream_closed() -> bool:
        return sim.stats.streams_aborted == aborted + 1

    await eventually(upstream_closed, within=2, what="the simulator to see the stream aborted")
    assert sim.stats.streams_completed == completed, "the upstream stream was read to its end"
    await page_a.close()
    await page_b.close()


async def test_many_concurrent_replies_on_both_workers_are_stored_and_shown_whole(site):
    count, tokens = 24, 60
    texts = [f"Concurrent question number {i}" for i in range(count)]
    owners = [site.workers[i % 2] for i in range(count)]
    conversations = await asyncio.gather(
        *(
            start_conversation(owner, site.cookies, text, f"demo?tokens={tokens}&tps=100")
            for owner, text in zip(owners, texts, strict=True)
        )
    )
    # Each conversation is watched from the worker that is not writing its reply.
    watchers = [site.workers[(i + 1) % 2] for i in range(count)]
    pages = await asyncio.gather(
        *(Page.open(w, c, site.cookies) for w, c in zip(watchers, conversations, strict=True))
    )
    wrong = []
    for text, conversation, page in zip(texts, conversations, pages, strict=True):
        (reply,) = await site.db.replies(conversation)
        reply_id = reply["id"]
        await page.wait(lambda p=page, r=reply_id: p.statuses.get(r) == "complete", within=20, what="the end")
        row = await site.db.reply(reply_id)
        expected = full_reply(text, tokens)
        stored, shown = row["content"], page.texts[reply_id]
        if (row["status"], stored) != ("complete", expected):
            wrong.append(
                f"reply {reply_id} stored {row['status']}: {len(stored)} of {len(expected)} characters"
            )
        if shown != rendered(expected):
            wrong.append(f"reply {reply_id} shown on a page: {len(shown)} of {len(expected)} characters")
        await page.close()
    assert not wrong, "replies not stored or shown whole:\n" + "\n".join(wrong)


async def test_a_page_left_idle_on_b_still_follows_the_next_reply_from_a(site):
    a, b, db = site.a, site.b, site.db
    conversation = await start_conversation(a, site.cookies, "A first, quick turn", "demo?tokens=3&tps=0")
    (first,) = await db.replies(conversation)
    await db.wait_reply(first["id"], lambda r: r["status"] == "complete", within=10, what="the first reply")
    page_b = await Page.open(b, conversation, site.cookies)
    page_a = await Page.open(a, conversation, site.cookies)

    await asyncio.sleep(6.5)  # nothing happens for a while: longer than the Redis client's 5 s read timeout
    await page_b.receive(0.1)
    assert not page_b.closed, f"B's idle page was closed ({page_b.close_code})"
    text = "Are you still listening?"
    await page_a.send(text, "demo?tokens=20&tps=50")
    await page_b.wait(lambda: page_b.new_replies({first["id"]}), within=5, what="the new reply on B")
    (reply_id,) = page_b.new_replies({first["id"]})
    await page_b.wait(lambda: reply_id in page_b.endings, within=10, what="the ending on B")
    assert page_b.texts[reply_id] == rendered(full_reply(text, 20))
    await page_a.close()
    await page_b.close()
