"""Redis going away mid-reply: the reply goes on and is stored whole; pages resync once it is back."""

from __future__ import annotations

import asyncio

import pytest

from tests.dom import rendered
from tests.production.support import Page, follow_to_end, full_reply, start_conversation

pytestmark = [pytest.mark.production, pytest.mark.live]

OUTAGE = 1.0  # seconds Redis is down


async def test_reply_survives_a_redis_restart_and_pages_resync(spawn, private_redis):
    site = spawn(redis_url=private_redis.url)
    a, b, db = site.a, site.b, site.db
    text = "Carry on while Redis restarts"
    tokens = 120  # 6 s at 20 tokens/s: still running when Redis is back
    conversation = await start_conversation(a, site.cookies, text, f"demo?tokens={tokens}&tps=20")
    (reply,) = await db.replies(conversation)
    reply_id = reply["id"]
    page_b = await Page.open(b, conversation, site.cookies)
    await page_b.wait(lambda: page_b.deltas.get(reply_id, 0) >= 3, within=10, what="deltas relayed to B")

    await asyncio.to_thread(private_redis.stop)
    await asyncio.sleep(OUTAGE)  # the length of the outage is the point
    await asyncio.to_thread(private_redis.start)

    # B's page can no longer trust what it shows: it is closed (to resync) or dropped.
    await page_b.wait_closed(within=15, what="B's page to be asked to resync")
    row = await db.reply(reply_id)
    assert row["status"] == "streaming", (
        f"the reply ended during the outage ({row['status']}: {row['error']})"
    )

    # A page reconnecting to B follows the rest of the reply live, or finds it complete.
    page, resyncs = await follow_to_end(b, conversation, site.cookies, reply_id, within=20)
    assert page.statuses[reply_id] == "complete"
    assert page.texts[reply_id] == rendered(full_reply(text, tokens))
    assert resyncs <= 3, f"the page had to resync {resyncs} times after Redis came back"
    row = await db.wait_reply(reply_id, lambda r: r["status"] != "streaming", within=5, what="the ending")
    assert (row["status"], row["content"]) == ("complete", full_reply(text, tokens))
    await page.close()
