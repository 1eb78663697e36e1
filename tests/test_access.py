"""Bob can neither read nor stream Alice's conversation, on any URL or socket."""

from __future__ import annotations

import uuid

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from chat.consumers import CLOSE_FORBIDDEN
from chat.models import Conversation
from chat.routing import websocket_urlpatterns
from chatsite.asgi import application
from tests.factories import stored_turn


def test_bob_gets_404_for_alices_conversation_page(client: Client, bob, alice_conversation, upstream):
    client.force_login(bob)
    assert client.get(alice_conversation.get_absolute_url()).status_code == 404


def test_unknown_conversation_is_404_too(client: Client, alice, upstream):
    client.force_login(alice)
    assert client.get(f"/c/{uuid.uuid4()}/").status_code == 404


def test_alice_sees_her_conversation(client: Client, alice, alice_conversation, upstream):
    client.force_login(alice)
    assert client.get(alice_conversation.get_absolute_url()).status_code == 200


def test_anonymous_visitor_is_sent_to_login(client: Client, alice, alice_conversation):
    response = client.get(alice_conversation.get_absolute_url())
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_bobs_sidebar_does_not_list_alices_conversations(client: Client, bob, alice_conversation, upstream):
    client.force_login(bob)
    assert "Alice&#x27;s chat" not in client.get("/").content.decode()


@pytest.mark.django_db(transaction=True)
async def test_bob_cannot_subscribe_to_alices_conversation(bob, alice_conversation):
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/c/{alice_conversation.pk}/")
    communicator.scope["user"] = bob
    connected, code = await communicator.connect()
    assert not connected
    assert code == CLOSE_FORBIDDEN


@pytest.mark.django_db(transaction=True)
async def test_socket_refuses_anonymous_and_checks_the_session_cookie(bob, alice_conversation):
    from asgiref.sync import sync_to_async

    client = Client()
    await sync_to_async(client.force_login)(bob)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
    path = f"/ws/c/{alice_conversation.pk}/"
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    assert (connected, code) == (False, CLOSE_FORBIDDEN)

    anonymous = WebsocketCommunicator(application, path, headers=headers[:2])
    connected, code = await anonymous.connect()
    assert (connected, code) == (False, CLOSE_FORBIDDEN)


@pytest.mark.django_db(transaction=True)
async def test_alice_subscribes_through_the_full_stack_with_her_session(alice, alice_conversation):
    from asgiref.sync import sync_to_async

    client = Client()
    await sync_to_async(client.force_login)(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, f"/ws/c/{alice_conversation.pk}/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


def test_a_messages_source_is_alices_alone(client: Client, alice, bob, alice_conversation, upstream):
    reply = stored_turn(alice_conversation, "question", "# Answer\n\n`code` <b>")
    url = f"/c/{alice_conversation.pk}/m/{reply.pk}/source"
    client.force_login(bob)
    assert client.get(url).status_code == 404
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == "# Answer\n\n`code` <b>"
    other = Conversation.objects.create(owner=alice, model="demo")
    assert client.get(f"/c/{other.pk}/m/{reply.pk}/source").status_code == 404
