"""Fair limits: a refused message is stored, its reply says which limit and when it resets, and
nothing goes upstream; limits hold under bursts, per group, on the database and on Redis."""

from __future__ import annotations

import asyncio
import re

import pytest
from django.contrib.auth.models import Group

from chat import limits, streaming, usage
from chat.models import Conversation, GroupLimits, Message, UsageDay
from tests.test_consumers import frames_until_final, join, latest_reply, send

pytestmark = pytest.mark.django_db(transaction=True)


def refusal_of(frames: list[str]) -> str:
    """The error text of the reply a refusal wrote, as the page was sent it."""
    joined = "".join(frames)
    assert re.search(r'<article id="m-\d+"[^>]*data-status="error"', joined), joined[:500]
    found = re.search(r'<p class="message-error">([^<]*)</p>', joined)
    assert found, joined[:500]
    return found.group(1)


async def send_and_end(page, text: str, model: str = "demo?tokens=3&tps=0") -> list[str]:
    await send(page, text, model)
    return await frames_until_final(page)


async def test_the_third_message_in_a_minute_is_stored_and_answered_with_the_limit(
    alice, alice_conversation, upstream, settings
):
    settings.CHAT_LIMIT_MESSAGES_PER_MINUTE = 2
    page, _ = await join(alice, alice_conversation)
    await send_and_end(page, "one")
    await send_and_end(page, "two")
    asked = upstream.stats.chat_requests
    text = refusal_of(await send_and_end(page, "three"))
    assert text.startswith("Message limit reached: 2 messages per minute. You can send again in ")
    assert re.search(r"\(at \d\d:\d\d\)\.$", text)
    assert upstream.stats.chat_requests == asked  # nothing went upstream
    reply = await latest_reply(alice_conversation)
    assert (reply.status, reply.refused_by, reply.error) == ("error", "messages_per_minute", text)
    question = await Message.objects.aget(pk=reply.parent_id)
    assert question.content == "three"  # the message is kept
    row = await UsageDay.objects.aget(user=alice)
    assert (row.requests, row.refused) == (2, 1)
    await page.disconnect()


async def test_a_reply_streaming_elsewhere_counts_against_concurrent_replies(alice, upstream, settings):
    settings.CHAT_LIMIT_CONCURRENT_REPLIES = 1
    first = await Conversation.objects.acreate(owner=alice, title="first", model="demo")
    second = await Conversation.objects.acreate(owner=alice, title="second", model="demo")
    page_one, _ = await join(alice, first)
    page_two, _ = await join(alice, second)
    await send(page_one, "a long one", "demo?tokens=40&tps=20")
    await asyncio.sleep(0.3)
    text = refusal_of(await send_and_end(page_two, "meanwhile"))
    assert text == (
        "Too many replies at once: you can have one reply written at the same time. "
        "Send again when one has finished."
    )
    await frames_until_final(page_one)
    await streaming.wait_all()
    assert (await latest_reply(first)).status == "complete"
    await send_and_end(page_two, "now it may")  # the slot is free again
    assert (await latest_reply(second)).status == "complete"
    await page_one.disconnect()
    await page_two.disconnect()


async def test_a_used_daily_token_budget_refuses_until_midnight(
    alice, alice_conversation, upstream, settings
):
    settings.CHAT_LIMIT_TOKENS_PER_DAY = 1000
    await UsageDay.objects.acreate(user=alice, day=usage.today(), model="demo", requests=3, prompt_tokens=900)
    page, _ = await join(alice, alice_conversation)
    await send_and_end(page, "under budget")  # 900 < 1000: admitted, and it adds its tokens
    await UsageDay.objects.filter(user=alice).aupdate(completion_tokens=200)
    text = refusal_of(await send_and_end(page, "over budget"))
    assert re.match(
        r"Daily token budget used: 1,\d\d\d of 1,000 tokens per day\. It resets at midnight, in ", text
    )
    await page.disconnect()


async def test_the_instance_cap_counts_every_users_streams(alice, bob, upstream, settings):
    settings.CHAT_MAX_UPSTREAM_STREAMS = 1
    bobs = await Conversation.objects.acreate(owner=bob, title="bob's", model="demo")
    alices = await Conversation.objects.acreate(owner=alice, title="alice's", model="demo")
    bob_page, _ = await join(bob, bobs)
    alice_page, _ = await join(alice, alices)
    await send(bob_page, "slow", "demo?tokens=40&tps=20")
    await asyncio.sleep(0.3)
    text = refusal_of(await send_and_end(alice_page, "me too"))
    assert text == "The service is at capacity: 1 replies are being written right now. Try again in a moment."
    await frames_until_final(bob_page)
    await streaming.wait_all()
    await bob_page.disconnect()
    await alice_page.disconnect()


async def test_regenerating_counts_as_a_message_and_is_refused_as_a_new_version(
    alice, alice_conversation, upstream, settings
):
    settings.CHAT_LIMIT_MESSAGES_PER_MINUTE = 1
    page, _ = await join(alice, alice_conversation)
    await send_and_end(page, "only one")
    reply = await latest_reply(alice_conversation)
    await page.send_json_to({"action": "regenerate", "message_id": reply.pk})
    refusal_of(await frames_until_final(page))
    again = await latest_reply(alice_conversation)
    assert again.pk != reply.pk and again.parent_id == reply.parent_id and again.refused_by
    await page.disconnect()


def test_a_group_overrides_the_defaults_and_the_most_generous_group_wins(alice, settings):
    settings.CHAT_LIMIT_MESSAGES_PER_MINUTE = 5
    settings.CHAT_LIMIT_MESSAGES_PER_DAY = 100
    settings.CHAT_LIMIT_CONCURRENT_REPLIES = 2
    assert limits.limits_for(alice.pk) == limits.Limits(5, 100, 2, 0, 0)
    students, staff = Group.objects.create(name="students"), Group.objects.create(name="staff")
    GroupLimits.objects.create(group=students, messages_per_minute=10, messages_per_day=50)
    GroupLimits.objects.create(group=staff, messages_per_minute=0)
    alice.groups.add(students)
    assert limits.limits_for(alice.pk) == limits.Limits(10, 50, 2, 0, 0)
    alice.groups.add(staff)  # unlimited per minute; the day stays the students' 50
    assert limits.limits_for(alice.pk) == limits.Limits(0, 50, 2, 0, 0)


def test_no_limit_reads_nothing(alice, settings, django_assert_num_queries):
    with django_assert_num_queries(1):  # the user's groups' limits, and nothing else
        assert limits.admit(user_id=alice.pk) is None
