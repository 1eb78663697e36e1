"""The conversation socket against the simulator on loopback: streaming, storing, endings."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from chat import markdown, streaming
from chat.models import Message
from chat.routing import websocket_urlpatterns
from chat.simulator import reply_text
from tests.dom import GROWS, Document, canonical, page_after, rendered

pytestmark = pytest.mark.django_db(transaction=True)

FINAL = re.compile(r'<footer id="m-(\d+)-meta"[^>]*data-ending="(complete|error|stopped|interrupted)"')


def connect(user, conversation, query: str = "") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/c/{conversation.pk}/{query}")
    communicator.scope["user"] = user
    return communicator


async def join(user, conversation, query: str = "") -> tuple[WebsocketCommunicator, list[str]]:
    """Connect and read the snapshot, which ends with the conversation's state frame."""
    communicator = connect(user, conversation, query)
    connected, _ = await communicator.connect()
    assert connected
    frames = []
    while not frames or 'id="chat-state"' not in frames[-1]:
        frames.append(await communicator.receive_from())
    return communicator, frames


async def frames_until_final(communicator: WebsocketCommunicator, wait: float = 10) -> list[str]:
    frames = []
    while True:
        frame = await communicator.receive_from(timeout=wait)
        frames.append(frame)
        if FINAL.search(frame):
            state = await communicator.receive_from(timeout=wait)  # the ending's state frame
            assert 'id="chat-state"' in state
            return frames


async def send(communicator, text: str, model: str = "demo") -> None:
    await communicator.send_json_to({"text": text, "model": model, "client_id": str(uuid.uuid4())})


async def latest_reply(conversation) -> Message:
    return await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")


async def test_reply_streams_as_several_frames_is_stored_and_completes(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "What is a <b>bold</b> claim?", "demo?tokens=30&tps=300")
    frames = await frames_until_final(communicator)
    await streaming.wait_all()

    deltas = [f for f in frames if "hx-swap-oob=beforeend>" in f and f.startswith("<span")]
    assert len(deltas) >= 3
    assert any('data-role="user"' in f and "What is a &lt;b&gt;bold&lt;/b&gt; claim?" in f for f in frames)
    reply = await latest_reply(alice_conversation)
    expected = reply_text([{"role": "user", "content": "What is a <b>bold</b> claim?"}], 30)
    assert reply.content == expected
    assert reply.status == Message.Status.COMPLETE
    assert reply.finish_reason == "stop"
    assert reply.model == "demo?tokens=30&tps=300"
    assert reply.first_token_ms is not None and reply.duration_ms >= reply.first_token_ms
    await communicator.disconnect()


async def test_user_message_is_stored_before_the_reply_row(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "first", "demo?tokens=3")
    await frames_until_final(communicator)
    await streaming.wait_all()
    roles = [m.role async for m in Message.objects.filter(conversation=alice_conversation).order_by("id")]
    assert roles == ["user", "assistant"]
    await communicator.disconnect()


async def test_sending_the_same_client_id_twice_stores_one_message(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    payload = {"text": "once", "model": "demo?tokens=2", "client_id": str(uuid.uuid4())}
    await communicator.send_json_to(payload)
    await frames_until_final(communicator)
    await communicator.send_json_to(payload)
    ack = await communicator.receive_from()
    assert 'id="client-id"' in ack
    await streaming.wait_all()
    assert await Message.objects.filter(conversation=alice_conversation, role="user").acount() == 1
    await communicator.disconnect()


async def test_rejected_key_ends_error_with_plain_reason(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "hi", "demo?fault=status-401")
    frames = await frames_until_final(communicator)
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.ERROR
    assert reply.error.startswith("The API key was rejected (401).")
    assert "The API key was rejected (401)." in frames[-1]
    await communicator.disconnect()


async def test_stream_cut_off_keeps_partial_text_and_ends_error(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "tell me", "demo?tokens=20&fault=cut-off-after-5")
    await frames_until_final(communicator)
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.ERROR
    assert "cut off" in reply.error
    assert reply.content == reply_text([{"role": "user", "content": "tell me"}], 20)[: len(reply.content)]
    assert reply.content == "".join(_tokens("tell me", 20)[:5])
    await communicator.disconnect()


def _tokens(text: str, count: int) -> list[str]:
    from chat.simulator import reply_tokens

    return reply_tokens([{"role": "user", "content": text}], count)


async def test_answer_that_is_not_a_stream_ends_error(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "hi", "demo?fault=not-sse")
    await frames_until_final(communicator)
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.ERROR
    assert reply.error.startswith("The server did not answer with a stream")
    await communicator.disconnect()


async def test_connection_refused_ends_error_naming_the_host(alice, alice_conversation, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CHAT_DEMO = False
    settings.CHAT_API_BASE = f"http://127.0.0.1:{port}/v1"
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "hi")
    await frames_until_final(communicator)
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.ERROR
    assert reply.error.startswith(f"Could not connect to 127.0.0.1:{port}")
    await communicator.disconnect()


async def test_empty_message_gets_a_notice_and_the_socket_stays_usable(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    await communicator.send_json_to({"text": "   ", "model": "demo"})
    notice = await communicator.receive_from()
    assert 'id="composer-notice"' in notice and "Type a message first." in notice
    await communicator.send_to(text_data="{not json")
    assert "not understood" in await communicator.receive_from()
    await send(communicator, "still here", "demo?tokens=2")
    await frames_until_final(communicator)
    await streaming.wait_all()
    await communicator.disconnect()


async def test_reply_outlives_the_socket_that_asked_for_it(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "go on without me", "demo?tokens=40&tps=200")
    await communicator.receive_from()  # the appended messages
    await communicator.disconnect()
    async with asyncio.timeout(10):
        await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == reply_text([{"role": "user", "content": "go on without me"}], 40)


async def test_joining_mid_reply_gets_snapshot_then_only_later_text(alice, alice_conversation, upstream):
    first, _ = await join(alice, alice_conversation)
    await send(first, "slowly", "demo?tokens=30&tps=100")
    deltas_seen = 0
    while deltas_seen < 3:
        if GROWS.search(await first.receive_from()):
            deltas_seen += 1
    reply = await latest_reply(alice_conversation)
    second, snapshot = await join(alice, alice_conversation)
    rest = await frames_until_final(second)
    await streaming.wait_all()
    assert f'id="m-{reply.pk}"' in snapshot[0] and 'data-status="streaming"' in snapshot[0]
    page = Document('<div id="messages"></div><div id="chat-state"></div>')
    for frame in [*snapshot, *rest]:
        page.apply(frame)
    await reply.arefresh_from_db()
    expected = reply_text([{"role": "user", "content": "slowly"}], 30)
    assert reply.content == expected
    assert (
        page.html_of(f"m-{reply.pk}-body")
        == canonical(markdown.render(expected))
        == canonical(reply.content_html)
    )
    await first.disconnect()
    await second.disconnect()


async def test_rate_limit_says_when_to_try_again_from_retry_after(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "hi", "demo?fault=status-429")
    frames = await frames_until_final(communicator)
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.ERROR
    assert (
        reply.error
        == "The model server is rate limiting requests (429). Try again in 7 seconds. Rate limit reached."
    )
    assert "Try again in 7 seconds." in frames[-1]
    await communicator.disconnect()


def new_chat(user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/new/")
    communicator.scope["user"] = user
    return communicator


async def test_the_new_chat_page_starts_a_conversation_over_its_socket_and_follows_it(alice, upstream):
    from chat.models import Conversation

    communicator = new_chat(alice)
    connected, _ = await communicator.connect()
    assert connected
    client_id = str(uuid.uuid4())
    first = {"text": "Start **here**", "model": "demo?tokens=20&tps=200", "client_id": client_id}
    await communicator.send_json_to(first)
    frames = await frames_until_final(communicator)
    await streaming.wait_all()
    conversation = await Conversation.objects.aget(owner=alice)
    started = next(frame for frame in frames if 'id="conversation-started"' in frame)
    assert (
        f'data-url="/c/{conversation.pk}/"' in started
        and f'data-socket="/ws/c/{conversation.pk}/"' in started
    )
    assert 'id="conversations-today" hx-swap-oob="afterbegin"' in started
    # its settings form, once the first text has had its turn
    assert f'hx-get="/c/{conversation.pk}/settings/" hx-trigger="load delay:200ms"' in started
    reply = await latest_reply(conversation)
    assert reply.status == Message.Status.COMPLETE
    page = page_after(frames)
    assert page.html_of(f"m-{reply.pk}-body") == rendered(reply.content)
    assert page.text_of(f"m-{reply.pk - 1}-body") == "Start **here**"  # the user's text, as typed

    await communicator.send_json_to(first)  # sent again after a reconnect: acknowledged, stored once
    assert 'id="client-id"' in await communicator.receive_from()
    await communicator.send_json_to({"action": "stop"})
    assert "Nothing is being written" in await communicator.receive_from()
    assert await Conversation.objects.filter(owner=alice).acount() == 1
    await communicator.disconnect()


async def test_a_refused_first_message_creates_nothing_and_the_socket_stays_usable(alice, upstream):
    from chat.models import Conversation

    communicator = new_chat(alice)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"text": "   "})
    assert "Type a message first." in await communicator.receive_from()
    await communicator.send_json_to({"action": "regenerate", "message_id": 1})
    assert "not understood" in await communicator.receive_from()
    assert not await Conversation.objects.filter(owner=alice).aexists()
    await communicator.disconnect()


async def test_the_new_chat_socket_refuses_anonymous_visitors(db):
    from django.contrib.auth.models import AnonymousUser

    communicator = new_chat(AnonymousUser())
    connected, code = await communicator.connect()
    assert (connected, code) == (False, 4403)


async def test_streamed_frames_skip_the_wrappers_of_send(alice, alice_conversation, upstream):
    """Under ``DirectSend`` a reply's frames go to the server's ``send``, not through middleware's."""
    from chat.consumers import DirectSend

    wrapped: list[str] = []

    def counting(app):
        async def middleware(scope, receive, send):
            async def counted(message):
                if message["type"] == "websocket.send":
                    wrapped.append(message["text"])
                await send(message)

            return await app(scope, receive, counted)

        return middleware

    app = DirectSend(counting(URLRouter(websocket_urlpatterns)))
    communicator = WebsocketCommunicator(app, f"/ws/c/{alice_conversation.pk}/")
    communicator.scope["user"] = alice
    assert (await communicator.connect())[0]
    while not wrapped or 'id="chat-state"' not in wrapped[-1]:
        await communicator.receive_from()
    await send(communicator, "Hello", "demo?tokens=30&tps=300")
    frames = await frames_until_final(communicator)
    await streaming.wait_all()

    deltas = [f for f in frames if "hx-swap-oob=beforeend>" in f and f.startswith("<span")]
    assert len(deltas) >= 3
    assert not set(deltas) & set(wrapped)
    await communicator.disconnect()
