"""Pages: first run, login, the chat page's stable interface, new chats, the model picker, settings."""

from __future__ import annotations

import asyncio
import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import AsyncClient, Client

from chat import streaming
from chat.models import Conversation, Message
from chat.simulator import SimulatorConfig, SimulatorThread, reply_text
from tests.factories import stored_turn
from tests.test_consumers import frames_until_final, join, send


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
    assert page.index(">newer<") < page.index(">older<")


def test_finished_conversation_reloads_as_stored_and_escaped(
    client: Client, alice, alice_conversation, upstream
):
    stored_turn(alice_conversation, "hi <script>", "line one\n<img src=x onerror=alert(1)>")
    client.force_login(alice)
    page = client.get(alice_conversation.get_absolute_url()).content.decode()
    assert 'data-role="user"' in page
    assert re.search(r'data-role="assistant" data-status="complete"', page)
    assert "<p>line one\n&lt;img src=x onerror=alert(1)&gt;</p>" in page
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


# --- Conversation settings ---------------------------------------------------------------------------


def settings_url(conversation: Conversation) -> str:
    return f"/c/{conversation.pk}/settings/"


def test_settings_are_collapsed_and_prefilled_with_the_effective_prompt(
    client: Client, alice, alice_conversation, upstream, settings
):
    settings.CHAT_SYSTEM_PROMPT = "Be kind & brief."
    client.force_login(alice)
    page = client.get(alice_conversation.get_absolute_url()).content.decode()
    details = re.search(r'<details id="conversation-settings"[^>]*>(.*?)</details>', page, re.S)
    assert details is not None and " open" not in details[0].split(">")[0]
    form = details[1]
    assert "<summary>Conversation settings</summary>" in form
    assert f'method="post" action="{settings_url(alice_conversation)}"' in form
    for label in ("System prompt", "Temperature", "Max tokens"):
        assert re.search(rf"<label for=\"[^\"]+\">{label}</label>", form)
    assert re.search(r"<textarea[^>]*>\nBe kind &amp; brief.</textarea>", form)
    assert re.search(r'<input type="number" name="temperature"[^>]*min="0"[^>]*max="2"[^>]*step="0.1"', form)
    assert re.search(r'<input type="number" name="max_tokens"[^>]*min="1"', form)
    assert '<button type="submit">Save settings</button>' in form
    assert '<details id="conversation-settings"' not in client.get("/").content.decode()  # none yet


def test_saving_settings_stores_them_and_shows_the_conversation(
    client: Client, alice, alice_conversation, upstream
):
    client.force_login(alice)
    response = client.post(
        settings_url(alice_conversation),
        {"system_prompt": "Answer in French.\r\nBe brief.", "temperature": "0.7", "max_tokens": "256"},
    )
    assert response.status_code == 303
    assert response["Location"] == alice_conversation.get_absolute_url()
    alice_conversation.refresh_from_db()
    assert alice_conversation.system_prompt == "Answer in French.\nBe brief."
    assert (alice_conversation.temperature, alice_conversation.max_tokens) == (0.7, 256)
    page = client.get(alice_conversation.get_absolute_url()).content.decode()
    assert 'value="0.7"' in page and 'value="256"' in page
    client.post(settings_url(alice_conversation), {"system_prompt": "", "temperature": "", "max_tokens": ""})
    alice_conversation.refresh_from_db()
    assert (alice_conversation.temperature, alice_conversation.max_tokens) == (None, None)


def test_a_prompt_equal_to_the_site_default_keeps_following_it(
    client: Client, alice, alice_conversation, upstream, settings
):
    settings.CHAT_SYSTEM_PROMPT = "Be kind."
    client.force_login(alice)
    url = settings_url(alice_conversation)
    client.post(url, {"system_prompt": "Be kind.", "temperature": "", "max_tokens": ""})
    alice_conversation.refresh_from_db()
    assert alice_conversation.system_prompt is None
    client.post(url, {"system_prompt": "", "temperature": "", "max_tokens": ""})
    alice_conversation.refresh_from_db()
    assert alice_conversation.system_prompt == ""  # emptied: no system prompt at all
    client.post(url, {"system_prompt": "Be cruel.", "temperature": "", "max_tokens": ""})
    alice_conversation.refresh_from_db()
    assert alice_conversation.system_prompt == "Be cruel."


@pytest.mark.parametrize(
    ("fields", "sentence"),
    [
        ({"temperature": "2.5"}, "Temperature must be a number from 0 to 2."),
        ({"temperature": "-0.1"}, "Temperature must be a number from 0 to 2."),
        ({"temperature": "warm"}, "Temperature must be a number from 0 to 2."),
        ({"temperature": "nan"}, "Temperature must be a number from 0 to 2."),
        ({"max_tokens": "0"}, "Max tokens must be a whole number of at least 1."),
        ({"max_tokens": "1.5"}, "Max tokens must be a whole number of at least 1."),
        ({"max_tokens": "99999999999"}, "Max tokens can be at most 2,147,483,647."),
        ({"system_prompt": "x" * 51}, "The system prompt is too long (51 characters; the limit is 50)."),
    ],
)
def test_invalid_settings_are_shown_on_the_open_form_and_nothing_is_stored(
    client: Client, alice, alice_conversation, upstream, settings, fields, sentence
):
    settings.CHAT_MAX_MESSAGE_CHARS = 50
    client.force_login(alice)
    submitted = {"system_prompt": "Kept <b>prompt</b>", "temperature": "1", "max_tokens": "12", **fields}
    response = client.post(settings_url(alice_conversation), submitted)
    assert response.status_code == 400
    page = response.content.decode()
    alert = re.search(r'<div class="notice" role="alert"><p id="([^"]+)">(.*?)</p></div>', page)
    assert alert is not None and alert[2] == html.escape(sentence)
    assert re.search(rf'aria-invalid="true" aria-describedby="[^"]*{alert[1]}"', page)  # tied to its field
    assert '<details id="conversation-settings" class="conversation-settings" open>' in page
    for name, value in submitted.items():
        assert html.escape(value) in page, name  # what was typed is kept (escaped)
    alice_conversation.refresh_from_db()
    assert (alice_conversation.system_prompt, alice_conversation.temperature) == (None, None)


def test_another_users_conversation_settings_are_not_found(client: Client, bob, alice_conversation, upstream):
    client.force_login(bob)
    response = client.post(
        settings_url(alice_conversation), {"system_prompt": "Mine now", "temperature": "1", "max_tokens": ""}
    )
    assert response.status_code == 404
    alice_conversation.refresh_from_db()
    assert (alice_conversation.system_prompt, alice_conversation.temperature) == (None, None)


def test_settings_need_a_login_and_get_gives_the_form_alone(
    client: Client, alice, bob, alice_conversation, upstream
):
    assert client.post(settings_url(alice_conversation), {"temperature": "1"}).status_code == 302
    client.force_login(bob)
    assert client.get(settings_url(alice_conversation)).status_code == 404
    client.force_login(alice)
    response = client.get(settings_url(alice_conversation))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<details id="conversation-settings"')
    assert 'name="csrfmiddlewaretoken"' in html and f'action="{settings_url(alice_conversation)}"' in html
    assert client.put(settings_url(alice_conversation)).status_code == 405


@pytest.mark.django_db(transaction=True)
async def test_the_request_carries_the_conversations_options_only_when_set(alice, settings):
    settings.CHAT_DEMO = False
    settings.CHAT_SYSTEM_PROMPT = ""
    with SimulatorThread(config=SimulatorConfig(tokens_per_second=0, reply_tokens=3)) as sim:
        settings.CHAT_API_BASE = sim.base_url
        client = AsyncClient()
        await client.aforce_login(alice)
        await client.post("/c/new/", {"text": "First", "model": "demo"})
        async with asyncio.timeout(10):
            await streaming.wait_all()
        first = sim.stats.last_chat_body
        assert first["messages"] == [{"role": "user", "content": "First"}]
        assert "temperature" not in first and "max_tokens" not in first
        conversation = await Conversation.objects.aget(owner=alice)
        response = await client.post(
            settings_url(conversation),
            {"system_prompt": "Talk like a pirate.", "temperature": "0.3", "max_tokens": "40"},
        )
        assert response.status_code == 303
        page, _ = await join(alice, conversation)
        await send(page, "Second")
        await frames_until_final(page)
        await page.disconnect()
        async with asyncio.timeout(10):
            await streaming.wait_all()
        second = sim.stats.last_chat_body
    assert second["messages"][0] == {"role": "system", "content": "Talk like a pirate."}
    assert second["messages"][-1] == {"role": "user", "content": "Second"}
    assert (second["temperature"], second["max_tokens"]) == (0.3, 40)


def test_a_finished_reply_shows_its_figures_and_a_copy_button(
    client: Client, alice, alice_conversation, upstream
):
    stored_turn(
        alice_conversation,
        "q",
        "a",
        model="demo",
        completion_tokens=200,
        first_token_ms=250,
        duration_ms=2250,
    )
    client.force_login(alice)
    page = client.get(alice_conversation.get_absolute_url()).content.decode()
    assert "<span>200 tokens</span>" in page
    assert "<span>100 tokens/s</span>" in page
    assert "first token 250 ms</span>" in page
    assert 'class="link copy-reply" data-source-url="/c/' in page
