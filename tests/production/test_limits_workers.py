"""Limits hold across two Daphne workers sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest
import redis

from tests.production.conftest import USERNAME
from tests.production.support import Page, start_conversation

pytestmark = [pytest.mark.production, pytest.mark.live]


async def user_id(db) -> int:
    (row,) = await db.rows("SELECT id FROM auth_user WHERE username = %s", USERNAME)
    return row["id"]


def forget_counts(redis_url: str, uid: int) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(f"chat:limits:{uid}:*"):
            client.delete(key)
    finally:
        client.close()


async def new_conversations(site, count: int) -> list[str]:
    """``count`` conversations of the account, each with a first turn that has ended."""
    conversations = []
    for n in range(count):
        conversation = await start_conversation(site.a, site.cookies, f"limits {n}", "demo?tokens=1&tps=0")
        (first,) = await site.db.replies(conversation)
        await site.db.wait_reply(first["id"], lambda r: r["status"] != "streaming", within=10, what="setup")
        conversations.append(conversation)
    return conversations


async def open_pages(site, conversations: list[str]) -> list[Page]:
    """Each conversation open on worker A or B in turn."""
    return [
        await Page.open(site.workers[n % 2], conversation, site.cookies)
        for n, conversation in enumerate(conversations)
    ]


async def replies_sent(pages: list[Page], model: str) -> list[int]:
    """Send on every page at once; the id of each page's new reply, once it has ended."""
    known = [set(page.roles) for page in pages]
    await asyncio.gather(*(page.send(f"at once {n}", model) for n, page in enumerate(pages)))
    replies = []
    for page, seen in zip(pages, known, strict=True):
        await page.wait(lambda p=page, s=seen: len(p.new_replies(s)) == 1, within=15, what="the reply")
        (reply_id,) = page.new_replies(seen)
        await page.wait_ending_or_close(reply_id, within=30)
        replies.append(reply_id)
    return replies


async def test_a_burst_across_two_workers_is_held_to_the_per_minute_limit(spawn, redis_url):
    setup = spawn()  # the conversations' first turns would count against the limit
    conversations = await new_conversations(setup, 8)
    for worker in setup.workers:
        worker.stop()
    site = spawn(CHAT_LIMIT_MESSAGES_PER_MINUTE=3)
    forget_counts(redis_url, await user_id(site.db))
    pages = await open_pages(site, conversations)
    replies = [await site.db.reply(r) for r in await replies_sent(pages, "demo?tokens=2&tps=0")]
    assert sorted(row["refused_by"] for row in replies) == [""] * 3 + ["messages_per_minute"] * 5, replies
    for page in pages:
        await page.close()


async def test_two_sockets_on_two_workers_cannot_exceed_the_concurrent_reply_limit(spawn):
    site = spawn(CHAT_LIMIT_CONCURRENT_REPLIES=1)
    page_a, page_b = pages = await open_pages(site, await new_conversations(site, 2))
    # 4 s replies: the two sends overlap even when one worker answers late (a loaded machine).
    rows = [await site.db.reply(r) for r in await replies_sent(pages, "demo?tokens=60&tps=15")]
    assert sorted(row["refused_by"] for row in rows) == ["", "concurrent_replies"], rows
    assert sorted(row["status"] for row in rows) == ["complete", "error"]
    await page_a.close()
    await page_b.close()


def failed_sign_in(worker, username: str) -> int:
    """One wrong password through ``worker``'s sign-in form; its status (200: checked, 429: refused)."""
    with httpx.Client(base_url=worker.url, timeout=20) as client:
        form = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        answer = client.post(
            "/accounts/login/",
            data={"username": username, "password": "a wrong guess", "csrfmiddlewaretoken": token},
        )
    assert answer.status_code in {200, 429}, answer.text[:500]
    return answer.status_code


@pytest.mark.parametrize("counted_in", ["redis", "database"])
async def test_a_burst_of_sign_ins_across_two_workers_gets_no_more_password_checks_than_allowed(
    spawn, counted_in, redis_url
):
    site = spawn(
        redis_url=redis_url if counted_in == "redis" else "",
        CHAT_LOGIN_FAILURES_PER_USERNAME=4,
        CHAT_LOGIN_FAILURES_PER_ADDRESS=0,
    )
    username = f"guessed-{uuid.uuid4().hex[:8]}"
    workers = [site.a, site.b] * 6
    statuses = await asyncio.gather(*(asyncio.to_thread(failed_sign_in, w, username) for w in workers))
    assert sorted(statuses) == [200] * 4 + [429] * 8
    assert {failed_sign_in(site.a, username), failed_sign_in(site.b, username)} == {429}
