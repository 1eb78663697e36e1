"""Pages: first run, login, the chat page's stable interface, new chats, the model picker."""

from __future__ import annotations

import asyncio
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import AsyncClient, Client

from chat import streaming
from chat.models import Conversation, Message
from chat.simulator import SimulatorConfig, SimulatorThread, reply_text
from tests.factories import stored_turn


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def test_first_run_page_creates_the_admin_then_disappears(client: Client, db, upstream):
    assert client.get("/accounts/login/")["Location"] == "/setup/"
    response = client.post(
        "/setup/",
        {"username": "root", "password1": "a-long-passphrase-42", "password2": "a-long-passphrase-42"},
    )
    assert response.status_code == 302
    admin = get_user_model().objects.get()
    assert admin.is_superuser and admin.is_staff
    assert client.get("/setup/").status_code == 404
    assert client.get("/accounts/login/").status_code == 302  # already signed in


def test_login_with_username_and_password(client: Client, alice, upstream):
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_wrong_password_says_so(client: Client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_chat_page_has_the_stable_controls(client: Client, alice, upstream):
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert re.search(r'<label for="message-text"[^>]*>Message</label>', page)
    assert re.search(r'<textarea id="message-text" name="text"', page)
    assert re.search(r'<label for="model-select">Model</label>', page)
    assert re.search(r'<button type="submit" id="send-button">Send</button>', page)
    assert "Stop" not in page  # not until stopping works


def test_model_picker_lists_the_servers_models(client: Client, alice, settings):
    config = SimulatorConfig(models=("model-b", "model-a"))
    with SimulatorThread(config=config) as sim:
        settings.CHAT_API_BASE = sim.base_url
        settings.CHAT_MODEL = "model-a"
        client.force_login(alice)
        page = client.get("/").content.decode()
    options = re.findall(r'<option value="([^"]+)"( selected)?>', page)
    assert options == [("model-a", " selected"), ("model-b", "")]


def test_model_picker_falls_back_to_chat_model_when_nothing_is_listed(client: Client, alice, settings):
    with SimulatorThread(config=SimulatorConfig(list_models=False)) as sim:
        settings.CHAT_API_BASE = sim.base_url
        settings.CHAT_MODEL = "my-model"
        client.force_login(alice)
        page = client.get("/").content.decode()
    assert re.findall(r'<option value="([^"]+)"', page) == ["my-model"]


def test_offline_demo_says_so_in_the_picker_and_banner(client: Client, alice, settings):
    settings.CHAT_DEMO = True
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert ">Demo (offline simulator)</option>" in page
    assert "Offline demo" in page


def test_sidebar_lists_conversations_newest_first(client: Client, alice, upstream):
    Conversation.objects.create(owner=alice, title="older", model="demo")
    Conversation.objects.create(owner=alice, title="newer", model="demo")
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert page.index("newer") < page.index("older")


def test_finished_conversation_reloads_as_stored_and_escaped(
    client: Client, alice, alice_conversation, upstream
):
    stored_turn(alice_conversation, "hi <script>", "line one\n<img src=x onerror=alert(1)>")
    client.force_login(alice)
    page = client.get(alice_conversation.get_absolute_url()).content.decode()
    assert 'data-role="user"' in page
    assert re.search(r'data-role="assistant" data-status="complete"', page)
    assert "line one\n&lt;img src=x onerror=alert(1)&gt;</div>" in page
    assert "<img src=x" not in page and "hi &lt;script&gt;" in page
    assert f'ws-connect="/ws/c/{alice_conversation.pk}/"' in page


@pytest.mark.django_db(transaction=True)
async def test_new_chat_stores_the_message_and_redirects_to_the_conversation(alice, upstream):
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.post("/c/new/", {"text": "Start here", "model": "demo?tokens=5"})
    assert response.status_code == 303
    conversation = await Conversation.objects.aget(owner=alice)
    assert response["Location"] == conversation.get_absolute_url()
    assert conversation.title == "Start here"
    async with asyncio.timeout(10):
        await streaming.wait_all()
    messages = [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]
    assert [(m.role, m.status) for m in messages] == [("user", "complete"), ("assistant", "complete")]
    assert messages[1].content == reply_text([{"role": "user", "content": "Start here"}], 5)


@pytest.mark.django_db(transaction=True)
async def test_new_chat_with_empty_text_keeps_the_form_and_says_why(alice, upstream):
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.post("/c/new/", {"text": "  ", "model": "demo"})
    assert response.status_code == 400
    assert "Type a message first." in response.content.decode()
    assert await Conversation.objects.acount() == 0
