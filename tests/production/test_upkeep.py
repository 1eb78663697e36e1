"""A worker writing many replies keeps all their rows current with one statement per interval."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.production.support import full_reply, start_conversation

pytestmark = [pytest.mark.production, pytest.mark.live]

REPLIES = 10
INTERVAL = 0.25  # CHAT_CHECKPOINT_SECONDS below, shorter than a third of the lease
SAVED = re.compile(r"Checkpoints of (\d+) replies saved in one statement")


async def test_many_replies_share_one_checkpoint_statement_and_no_lease_lapses(spawn):
    site = spawn(CHAT_LOG_LEVEL="DEBUG", CHAT_LEASE_SECONDS="1.5", CHAT_CHECKPOINT_SECONDS=str(INTERVAL))
    texts = [f"upkeep {n}" for n in range(REPLIES)]
    started = time.monotonic()
    conversations = [
        await start_conversation(site.a, site.cookies, text, "demo?tokens=40&tps=10") for text in texts
    ]
    replies = [(await site.db.replies(conversation))[0]["id"] for conversation in conversations]
    lapsed = 0
    while True:
        (row,) = await site.db.rows(
            "SELECT count(*) FILTER (WHERE status = 'streaming') AS live, "
            "count(*) FILTER (WHERE status = 'streaming' AND lease_expires_at < now()) AS lapsed "
            "FROM chat_message WHERE id = ANY(%s)",
            replies,
        )
        lapsed += row["lapsed"]
        if not row["live"]:
            break
        assert time.monotonic() - started < 30, "the replies did not end"
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    assert lapsed == 0, "a reply's lease ran out while it was being written"
    for reply_id, text in zip(replies, texts, strict=True):
        row = await site.db.reply(reply_id)
        assert (row["status"], row["content"]) == ("complete", full_reply(text, 40))

    batches = [int(n) for n in SAVED.findall(site.a.output())]
    # One statement per interval for all of them (a write per reply would be ten times as many).
    assert len(batches) <= elapsed / INTERVAL + 2, f"{len(batches)} statements in {elapsed:.1f} s"
    assert max(batches) >= REPLIES - 1, batches
