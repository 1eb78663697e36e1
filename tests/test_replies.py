"""A reply that never loses a word: snapshots, many pages, stop, one reply at a time, branches, leases."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.db import OperationalError, connection
from django.db.backends.utils import CursorWrapper
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import services, streaming
from chat.models import Conversation, Message
from chat.simulator import reply_text
from tests.dom import page_after, rendered
from tests.test_consumers import FINAL, frames_until_final, join, latest_reply, send

pytestmark = pytest.mark.django_db(transaction=True)


def body(frames: list[str], message_id: int) -> str:
    """The reply's body as a page that was sent ``frames`` shows it."""
    return page_after(frames).html_of(f"m-{message_id}-body")


async def receive_until(communicator, pattern: str, wait: float = 10) -> list[str]:
    frames = []
    while not frames or not re.search(pattern, frames[-1]):
        frames.append(await communicator.receive_from(timeout=wait))
    return frames


async def wait_for_deltas(communicator, count: int) -> list[str]:
    frames: list[str] = []
    while sum("-tail" in frame for frame in frames) < count:
        frames.append(await communicator.receive_from(timeout=10))
    return frames


def first_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_two_pages_see_the_same_reply_and_each_others_messages(alice, alice_conversation, upstream):
    first, first_snapshot = await join(alice, alice_conversation)
    second, second_snapshot = await join(alice, alice_conversation)
    await send(first, "shared", "demo?tokens=25&tps=200")
    seen_by_first = first_snapshot + await frames_until_final(first)
    seen_by_second = second_snapshot + await frames_until_final(second)
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    expected = rendered(reply_text(first_turn("shared"), 25))
    assert body(seen_by_first, reply.pk) == body(seen_by_second, reply.pk) == expected
    assert any('data-role="user"' in frame and "shared" in frame for frame in seen_by_second)
    await first.disconnect()
    await second.disconnect()


async def test_reconnecting_with_the_current_version_gets_only_the_live_reply(
    alice, alice_conversation, upstream
):
    first, first_snapshot = await join(alice, alice_conversation)
    await send(first, "resume me", "demo?tokens=40&tps=80")
    shown_before = first_snapshot + await wait_for_deltas(first, 3)
    version = (await Conversation.objects.aget(pk=alice_conversation.pk)).version
    reply = await latest_reply(alice_conversation)
    again, snapshot = await join(alice, alice_conversation, f"?since={version}")
    assert not any('id="messages"' in frame for frame in snapshot)  # the page has the branch already
    assert snapshot[0].startswith(f'<article id="m-{reply.pk}"') and 'data-status="streaming"' in snapshot[0]
    rest = await frames_until_final(again)
    await streaming.wait_all()
    assert body(shown_before + snapshot + rest, reply.pk) == rendered(reply_text(first_turn("resume me"), 40))
    await first.disconnect()
    await again.disconnect()


async def test_reconnecting_with_an_old_version_redraws_the_branch(alice, alice_conversation, upstream):
    first, _ = await join(alice, alice_conversation)
    await send(first, "one", "demo?tokens=3")
    await frames_until_final(first)
    await streaming.wait_all()
    again, snapshot = await join(alice, alice_conversation, "?since=0")
    assert snapshot[0].startswith("<div id=messages hx-swap-oob=innerHTML>")
    assert 'data-role="user"' in snapshot[0] and 'data-status="complete"' in snapshot[0]
    assert 'data-version="2"' in snapshot[-1]
    await first.disconnect()
    await again.disconnect()


async def test_stop_from_another_page_keeps_the_partial_text_and_closes_the_upstream(
    alice, alice_conversation, upstream
):
    aborted_before = upstream.stats.streams_aborted
    writer, _ = await join(alice, alice_conversation)
    watcher, _ = await join(alice, alice_conversation)
    await send(writer, "a long one", "demo?tokens=400&tps=50")
    await wait_for_deltas(watcher, 3)
    await watcher.send_json_to({"action": "stop"})
    frames = await receive_until(watcher, FINAL.pattern)
    assert 'data-ending="stopped"' in frames[-1] and "Stopped." in frames[-1]
    await frames_until_final(writer)
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    full = reply_text(first_turn("a long one"), 400)
    assert reply.status == Message.Status.STOPPED
    assert 0 < len(reply.content) < len(full) and full.startswith(reply.content)
    for _ in range(50):
        if upstream.stats.streams_aborted > aborted_before:
            break
        await asyncio.sleep(0.05)
    assert upstream.stats.streams_aborted == aborted_before + 1
    await writer.disconnect()
    await watcher.disconnect()


async def test_stop_with_nothing_running_says_so(alice, alice_conversation, upstream):
    page, _ = await join(alice, alice_conversation)
    await page.send_json_to({"action": "stop"})
    assert "Nothing is being written right now." in await page.receive_from()
    await page.disconnect()


async def test_sending_while_a_reply_streams_is_refused_and_nothing_is_stored(
    alice, alice_conversation, upstream
):
    page, _ = await join(alice, alice_conversation)
    await send(page, "first", "demo?tokens=200&tps=50")
    await wait_for_deltas(page, 1)
    await send(page, "second, too soon")
    frames = await receive_until(page, 'id="composer-notice"[^>]*>[^<]')  # a notice with text (not an ack)
    assert "A reply is still being written." in frames[-1]
    assert not await Message.objects.filter(content="second, too soon").aexists()
    await page.send_json_to({"action": "stop"})
    await frames_until_final(page)
    await streaming.wait_all()
    await page.disconnect()


async def test_regenerate_keeps_versions_and_switching_shows_each(alice, alice_conversation, upstream):
    page, _ = await join(alice, alice_conversation)
    await send(page, "question", "demo?tokens=5")
    await frames_until_final(page)
    await streaming.wait_all()
    original = await latest_reply(alice_conversation)

    await page.send_json_to({"action": "regenerate", "message_id": original.pk, "model": "demo?tokens=7"})
    redraw = await receive_until(page, 'id="chat-state"')
    assert redraw[0].startswith("<div id=messages hx-swap-oob=innerHTML>")
    assert "2/2" in redraw[0] and 'aria-label="Previous version"' in redraw[0]
    ending = await frames_until_final(page)
    assert "2/2" in ending[-1]  # the finished reply still offers its versions
    await streaming.wait_all()
    regenerated = await latest_reply(alice_conversation)
    assert regenerated.parent_id == original.parent_id and regenerated.pk != original.pk
    assert regenerated.content == reply_text(first_turn("question"), 7)
    assert upstream.stats.last_chat_body["messages"] == first_turn("question")

    await page.send_json_to({"action": "switch", "message_id": original.pk})
    redraw = await receive_until(page, 'id="chat-state"')
    assert "1/2" in redraw[0] and f'id="m-{original.pk}"' in redraw[0]
    assert f'id="m-{regenerated.pk}"' not in redraw[0]
    conversation = await Conversation.objects.aget(pk=alice_conversation.pk)
    assert conversation.current_leaf_id == original.pk
    await page.disconnect()


async def test_edit_sends_the_edited_branch_and_keeps_the_original(alice, alice_conversation, upstream):
    page, _ = await join(alice, alice_conversation)
    await send(page, "first question", "demo?tokens=4")
    await frames_until_final(page)
    await streaming.wait_all()
    await send(page, "follow-up", "demo?tokens=4")
    await frames_until_final(page)
    await streaming.wait_all()
    follow_up = await Message.objects.aget(content="follow-up")

    await page.send_json_to(
        {"action": "edit", "message_id": follow_up.pk, "text": "better follow-up", "model": "demo?tokens=6"}
    )
    await frames_until_final(page)
    await streaming.wait_all()
    first_reply = reply_text(first_turn("first question"), 4)
    assert upstream.stats.last_chat_body["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": first_reply},
        {"role": "user", "content": "better follow-up"},
    ]
    edited = await Message.objects.aget(content="better follow-up")
    assert edited.parent_id == follow_up.parent_id
    page_again, snapshot = await join(alice, alice_conversation)
    assert "better follow-up" in snapshot[0] and "2/2" in snapshot[0]
    assert ">follow-up<" not in snapshot[0]

    await page_again.send_json_to({"action": "switch", "message_id": follow_up.pk})
    redraw = await receive_until(page_again, 'id="chat-state"')
    assert ">follow-up<" in redraw[0] and "1/2" in redraw[0]
    await page.disconnect()
    await page_again.disconnect()


async def test_a_reply_left_by_a_dead_worker_is_marked_interrupted_when_opened(alice, alice_conversation):
    turn = await database_sync_to_async(services.message_post)(
        conversation=alice_conversation, text="hello", model="demo", worker="worker.gone"
    )
    await database_sync_to_async(services.reply_checkpoint)(reply_id=turn.reply.pk, text="saved so far")
    await Message.objects.filter(pk=turn.reply.pk).aupdate(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    page, snapshot = await join(alice, alice_conversation)
    reply = await Message.objects.aget(pk=turn.reply.pk)
    assert reply.status == Message.Status.INTERRUPTED and reply.content == "saved so far"
    assert 'data-status="interrupted"' in snapshot[0] and "This reply was interrupted" in snapshot[0]
    await page.disconnect()


async def test_a_page_watching_a_reply_whose_worker_died_is_resynced_when_the_lease_runs_out(
    alice, alice_conversation, settings
):
    settings.CHAT_SWEEP_SECONDS = 0.2  # the workers' regular sweep finds it
    turn = await database_sync_to_async(services.message_post)(
        conversation=alice_conversation, text="hello", model="demo", worker="worker.gone"
    )
    await Message.objects.filter(pk=turn.reply.pk).aupdate(
        content="checkpoint", lease_expires_at=timezone.now() + timedelta(seconds=0.5)
    )
    page, snapshot = await join(alice, alice_conversation)
    assert 'data-status="streaming"' in snapshot[0]
    output = await page.receive_output(timeout=5)  # the ending makes the page reconnect
    assert output == {"type": "websocket.close", "code": 4012}
    reply = await Message.objects.aget(pk=turn.reply.pk)
    assert reply.status == Message.Status.INTERRUPTED and reply.content == "checkpoint"


async def test_stop_on_a_reply_whose_worker_died_ends_it_as_interrupted(alice, alice_conversation):
    turn = await database_sync_to_async(services.message_post)(
        conversation=alice_conversation, text="hello", model="demo", worker="worker.gone"
    )
    await Message.objects.filter(pk=turn.reply.pk).aupdate(
        content="checkpoint", lease_expires_at=timezone.now() + timedelta(seconds=0.3)
    )
    page, snapshot = await join(alice, alice_conversation)
    assert 'data-status="streaming"' in snapshot[0]
    await asyncio.sleep(0.4)  # the lease runs out; no sweep has run yet
    await page.send_json_to({"action": "stop"})
    assert await page.receive_output(timeout=5) == {"type": "websocket.close", "code": 4012}
    reply = await Message.objects.aget(pk=turn.reply.pk)
    assert reply.status == Message.Status.INTERRUPTED and reply.content == "checkpoint"


async def _sweep_now() -> list:
    """A sweep from the test's thread. The tests' in-memory SQLite (shared cache) locks whole tables
    and has no busy wait, so a sweep racing the reply's checkpoint is retried; the app's own
    database (a file in WAL mode, or PostgreSQL) waits instead of failing."""
    for _ in range(50):
        try:
            return await database_sync_to_async(services.sweep_interrupted)()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            await asyncio.sleep(0.01)
    raise AssertionError("the messages table stayed locked for half a second")


async def test_a_long_reply_renews_its_lease_and_is_never_swept(
    alice, alice_conversation, upstream, settings
):
    settings.CHAT_LEASE_SECONDS = 0.6
    page, _ = await join(alice, alice_conversation)
    await send(page, "take your time", "demo?tokens=30&tps=20")  # 1.5 s, over twice the lease
    final = None
    while final is None:
        frames = await receive_until(page, ".", wait=10)
        assert await _sweep_now() == []
        final = FINAL.search(frames[-1])
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == reply_text(first_turn("take your time"), 30)
    await page.disconnect()


async def test_database_writes_per_reply_do_not_grow_with_tokens(
    alice, alice_conversation, upstream, settings, monkeypatch
):
    settings.CHAT_CHECKPOINT_SECONDS = 0.5
    writes: list[str] = []
    execute = CursorWrapper.execute

    def counting(self, sql, params=None):  # every thread's connection goes through here
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append(sql)
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", counting)
    page, _ = await join(alice, alice_conversation)
    await send(page, "count my writes", "demo?tokens=300&tps=200")  # 1.5 s, 300 tokens
    await frames_until_final(page)
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.COMPLETE
    # 3 to store the turn and 1 to index the question, 2 to record the ending, 1 to index the
    # reply and 2 to count its usage (the day's row, created on first use), and a checkpoint at
    # most every 0.5 s.
    assert 9 <= len(writes) <= 9 + 4, writes
    await page.disconnect()


async def test_a_second_send_with_a_new_client_id_after_the_reply_is_a_new_turn(
    alice, alice_conversation, upstream
):
    page, _ = await join(alice, alice_conversation)
    for text in ("one", "two"):
        await page.send_json_to({"text": text, "model": "demo?tokens=2", "client_id": str(uuid.uuid4())})
        await frames_until_final(page)
        await streaming.wait_all()
    messages = [m async for m in Message.objects.filter(conversation=alice_conversation).order_by("id")]
    assert [m.parent_id for m in messages] == [None, messages[0].pk, messages[1].pk, messages[2].pk]
    await page.disconnect()


async def test_regenerate_without_a_model_uses_the_conversations_latest_choice(
    alice, alice_conversation, upstream
):
    page, _ = await join(alice, alice_conversation)  # this socket saw the conversation's model "demo"
    await send(page, "pick", "demo?tokens=3")
    await frames_until_final(page)
    await streaming.wait_all()
    original = await latest_reply(alice_conversation)
    await page.send_json_to({"action": "regenerate", "message_id": original.pk})
    await frames_until_final(page)
    await streaming.wait_all()
    regenerated = await latest_reply(alice_conversation)
    assert regenerated.pk != original.pk and regenerated.model == "demo?tokens=3"
    assert regenerated.content == reply_text(first_turn("pick"), 3)
    await page.disconnect()


async def test_a_worker_shutting_down_refuses_new_replies_with_a_reason(
    alice, alice_conversation, upstream, monkeypatch
):
    page, _ = await join(alice, alice_conversation)
    monkeypatch.setattr(streaming, "_shutting_down", True)
    await send(page, "too late")
    frames = await receive_until(page, 'id="composer-notice"')
    assert "The server is restarting; send your message again in a moment." in frames[-1]
    assert not await Message.objects.filter(content="too late").aexists()
    await page.disconnect()


def test_a_message_sent_again_is_the_same_turn_while_and_after_its_reply_streams(alice_conversation):
    client_id = uuid.uuid4()

    def post(text: str = "Hello there") -> services.PostedTurn:
        return services.message_post(
            conversation=alice_conversation, text=text, model="demo", worker="w", client_id=client_id
        )

    first = post()
    assert first.created and first.reply.status == Message.Status.STREAMING
    again = post()  # its reply still streams: the same turn, not "a reply is still being written"
    assert not again.created
    assert (again.user_message.pk, again.reply.pk) == (first.user_message.pk, first.reply.pk)
    Message.objects.filter(pk=first.reply.pk).update(status=Message.Status.COMPLETE)
    assert post("edited on the way").reply.pk == first.reply.pk  # and after it ended
    assert Message.objects.filter(conversation=alice_conversation).count() == 2
    with pytest.raises(ValidationError, match="still being written"):
        Message.objects.filter(pk=first.reply.pk).update(status=Message.Status.STREAMING)
        services.message_post(
            conversation=alice_conversation, text="new", model="demo", worker="w", client_id=uuid.uuid4()
        )


def test_a_new_message_is_stored_without_looking_for_an_earlier_send(alice_conversation):
    """The idempotency lookup is for resends only: a new message's reply starts sooner without it."""
    with CaptureQueriesContext(connection) as queries:
        turn = services.message_post(
            conversation=alice_conversation, text="Hi", model="demo", worker="w", client_id=uuid.uuid4()
        )
    assert turn.created
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert reads and not [sql for sql in reads if '"client_id" =' in sql]
