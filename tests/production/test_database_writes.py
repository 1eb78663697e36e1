"""What a reply costs the database: a handful of writes plus one per checkpoint, never one per token."""

from __future__ import annotations

import math

import pytest

from tests.production.support import Page, full_reply, start_conversation

pytestmark = [pytest.mark.production, pytest.mark.live]

CHECKPOINT = 1.0
TOKENS, TPS = 120, 40  # a 3-second reply
# The user's message and the reply row (2 inserts), the conversation's leaf and version (1 update),
# the ending (the reply and the conversation's version: 2 updates), the day's usage row (1: an
# update, or an insert for the day's first reply), and one spare.
FIXED_WRITES = 7


async def test_writes_per_reply_are_bounded_by_checkpoints_not_tokens(spawn, figures):
    # The production defaults for the checkpoint and the lease (renewed every third of it). Each
    # database trip gets its own connection, so PostgreSQL counts a trip's writes when it ends
    # (a connection kept open reports them up to 10 s late, into the next reply's count).
    site = spawn(CHAT_CHECKPOINT_SECONDS=CHECKPOINT, CHAT_LEASE_SECONDS=15, DATABASE_CONN_MAX_AGE=0)
    a, b, db = site.a, site.b, site.db
    conversation = await start_conversation(a, site.cookies, "Set the scene", "demo?tokens=2&tps=0")
    (first,) = await db.replies(conversation)
    await db.wait_reply(first["id"], lambda r: r["status"] == "complete", within=10, what="the first reply")
    page_a = await Page.open(a, conversation, site.cookies)
    page_b = await Page.open(b, conversation, site.cookies)  # a page on the other worker costs no writes
    before = await db.settled_writes()

    text = "Count the writes of this reply"
    await page_a.send(text, f"demo?tokens={TOKENS}&tps={TPS}")
    await page_a.wait(lambda: page_a.new_replies({first["id"]}), within=5, what="the reply on A")
    (reply_id,) = page_a.new_replies({first["id"]})
    await page_b.wait(lambda: reply_id in page_b.endings, within=15, what="the ending on B")
    row = await db.wait_reply(reply_id, lambda r: r["status"] != "streaming", within=5, what="the ending")
    assert (row["status"], row["content"]) == ("complete", full_reply(text, TOKENS))
    after = await db.settled_writes()

    writes = after - before
    seconds = row["duration_ms"] / 1000
    bound = FIXED_WRITES + math.ceil(seconds / CHECKPOINT) + 1
    figures.append(
        f"database writes for one {TOKENS}-token reply streamed in {seconds:.1f} s "
        f"(checkpoint every {CHECKPOINT:g} s, lease 15 s): {writes} (bound {bound})"
    )
    assert writes >= 5, f"only {writes} writes counted: the statistics are not being read"
    assert writes <= bound, f"{writes} writes for one reply of {TOKENS} tokens in {seconds:.1f} s"
    await page_a.close()
    await page_b.close()
