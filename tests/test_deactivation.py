"""An admin deactivates a user: that user's open sockets close at once and their replies stop."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import streaming
from chat.consumers import CLOSE_FORBIDDEN
from chat.events import ACCOUNT_CLOSED
from chat.models import Conversation
from tests.test_consumers import join, latest_reply, new_chat, send
from tests.test_replies import wait_for_deltas

pytestmark = pytest.mark.django_db(transaction=True)


def deactivate(user) -> None:
    user.is_active = False
    user.save()


async def test_deactivating_closes_every_socket_of_the_user_and_stops_their_reply(alice, bob, upstream):
    conversation = await Conversation.objects.acreate(owner=alice, title="live", model="demo")
    page, _ = await join(alice, conversation)
    blank = new_chat(alice)
    assert (await blank.connect())[0]
    bobs = await Conversation.objects.acreate(owner=bob, title="bob's", model="demo")
    bob_page, _ = await join(bob, bobs)
    await send(page, "write slowly", "demo?tokens=200&tps=20")
    await wait_for_deltas(page, 4)  # the reply is streaming

    await database_sync_to_async(deactivate)(alice)

    for socket in (page, blank):
        frames = []
        while True:
            output = await socket.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                assert output["code"] == CLOSE_FORBIDDEN
                break
            frames.append(output.get("text", ""))
        assert any(ACCOUNT_CLOSED in frame for frame in frames)
    await streaming.wait_all()
    reply = await latest_reply(conversation)
    assert reply.status == "stopped" and reply.content  # the text so far is kept
    assert await bob_page.receive_nothing(timeout=0.3)  # other accounts are untouched
    await bob_page.disconnect()


async def test_saving_an_active_user_closes_nothing(alice, alice_conversation, upstream):
    page, _ = await join(alice, alice_conversation)
    alice.first_name = "Alice"
    await database_sync_to_async(alice.save)()
    await asyncio.sleep(0.1)
    assert await page.receive_nothing(timeout=0.3)
    await page.disconnect()
