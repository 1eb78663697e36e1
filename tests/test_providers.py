"""Admin-added providers: the grouped model picker, what it submits, and replies from a provider."""

from __future__ import annotations

import asyncio
import re
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import AsyncClient, Client

from chat import providers, services, streaming
from chat.models import Conversation, Message, Provider
from chat.simulator import SimulatorConfig, SimulatorThread, reply_text
from tests.factories import stored_turn
from tests.test_consumers import frames_until_final, join, latest_reply

KEY = "sk-test-1234567890"


def provider_server(*, list_models: bool = True) -> SimulatorThread:
    """A provider's server: needs ``KEY``, serves "alpha" and "beta", answers five tokens at once."""
    config = SimulatorConfig(
        api_key=KEY, models=("alpha", "beta"), list_models=list_models, tokens_per_second=0, reply_tokens=5
    )
    return SimulatorThread(config=config)


def make_provider(server: SimulatorThread, name: str = "Acme", key: str = KEY, **fields) -> Provider:
    provider = Provider(name=name, base_url=server.base_url, **fields)
    provider.set_api_key(key)
    provider.save()
    return provider


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


@pytest.fixture
def acme_server() -> Iterator[SimulatorThread]:
    with provider_server() as sim:
        yield sim


@pytest.fixture
def unlisted_server() -> Iterator[SimulatorThread]:
    """A server whose ``GET /models`` answers 404."""
    with provider_server(list_models=False) as sim:
        yield sim


def picker(page: str) -> list[tuple[str, list[str]]]:
    """The picker's groups: each optgroup's label and its option values, in page order."""
    select = re.search(r'<select id="model-select" name="model">(.*?)</select>', page, re.S)
    assert select is not None
    return [
        (label, re.findall(r'<option value="([^"]+)"', options))
        for label, options in re.findall(r'<optgroup label="([^"]*)">(.*?)</optgroup>', select[1], re.S)
    ]


def selected(page: str) -> list[str]:
    return re.findall(r'<option value="([^"]+)" selected>', page)


# --- The picker -------------------------------------------------------------------------------------


def test_picker_groups_the_environment_first_then_each_enabled_provider(
    client: Client, alice, upstream, acme_server, unlisted_server
):
    acme = make_provider(acme_server)
    make_provider(acme_server, name="Dormant", enabled=False)
    quiet = make_provider(unlisted_server, name="Quiet", model_ids="gamma\n\n  delta  \n")
    client.force_login(alice)
    page = client.get("/").content.decode()
    host = upstream.base_url.split("//")[1].split("/")[0]
    assert picker(page) == [
        (host, ["demo"]),
        ("Acme", [f"p{acme.pk}:alpha", f"p{acme.pk}:beta"]),
        ("Quiet", [f"p{quiet.pk}:gamma", f"p{quiet.pk}:delta"]),  # no list at /models: its own list
    ]
    assert selected(page) == ["demo"]  # a new chat starts on the environment's model


def test_offline_demo_group_keeps_its_label(client: Client, alice, settings):
    settings.CHAT_DEMO = True
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert (
        '<optgroup label="Offline demo"><option value="demo" selected>Demo (offline simulator)</option>'
        in page
    )


def test_provider_with_every_model_off_offers_only_its_own_list(client: Client, alice, upstream, acme_server):
    acme = make_provider(acme_server, all_models=False, model_ids="beta")
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert picker(page)[1] == ("Acme", [f"p{acme.pk}:beta"])
    assert acme_server.stats.requests == 0  # nothing to ask


def test_model_lists_are_cached_until_the_provider_is_edited(client: Client, alice, upstream, acme_server):
    acme = make_provider(acme_server)
    client.force_login(alice)
    client.get("/")
    asked = acme_server.stats.requests
    assert asked == 1
    client.get("/")
    assert acme_server.stats.requests == asked
    acme.model_ids = "alpha"
    acme.save()
    client.get("/")
    assert acme_server.stats.requests == asked + 1


def test_a_failed_listing_falls_back_to_the_configured_models_and_is_retried_soon(
    client: Client, alice, upstream, unlisted_server
):
    quiet = make_provider(unlisted_server, name="Quiet", model_ids="gamma")
    client.force_login(alice)
    client.get("/")
    client.get("/")
    assert unlisted_server.stats.requests == 1  # the 404 is cached too...
    quiet.refresh_from_db()
    expires = cache._expire_info[cache.make_key(providers._listing_key(quiet))]  # type: ignore[attr-defined]
    assert 0 < expires - time.time() <= providers.FAILED_LIST_SECONDS  # ...but only briefly


class SlowListing(socketserver.ThreadingTCPServer):
    """A loopback server that takes ``DELAY`` seconds to list its one model (the simulator lists at once)."""

    DELAY = 1.0
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SlowListingHandler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class SlowListingHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        time.sleep(SlowListing.DELAY)
        body = b'{"data": [{"id": "slow-model"}]}'
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.wfile.write(head.encode() + b"Connection: close\r\n\r\n" + body)


def test_slow_providers_are_asked_at_the_same_time(client: Client, alice, upstream):
    servers = [SlowListing() for _ in range(3)]
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        slow = [make_provider(server, name=f"Slow {n}") for n, server in enumerate(servers)]  # type: ignore[arg-type]
        client.force_login(alice)
        started = time.monotonic()
        page = client.get("/").content.decode()
        elapsed = time.monotonic() - started
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert picker(page)[1:] == [(p.name, [f"p{p.pk}:slow-model"]) for p in slow]
    assert elapsed < 2 * SlowListing.DELAY  # one wait for all three, not three in turn


def test_the_conversations_provider_and_model_are_selected(client: Client, alice, upstream, acme_server):
    acme = make_provider(acme_server)
    conversation = Conversation.objects.create(owner=alice, model="beta", provider=acme)
    client.force_login(alice)
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert selected(page) == [f"p{acme.pk}:beta"]


def test_a_model_no_longer_listed_stays_selectable_for_its_conversation(
    client: Client, alice, upstream, acme_server
):
    acme = make_provider(acme_server)
    conversation = Conversation.objects.create(owner=alice, model="retired", provider=acme)
    client.force_login(alice)
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert picker(page)[1] == ("Acme", [f"p{acme.pk}:alpha", f"p{acme.pk}:beta", f"p{acme.pk}:retired"])
    assert selected(page) == [f"p{acme.pk}:retired"]


def test_provider_names_and_models_are_escaped_in_the_picker(client: Client, alice, upstream, acme_server):
    make_provider(acme_server, name='Evil"><script>', all_models=False, model_ids="<b>x</b>")
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "<script>" not in page and "<b>x</b>" not in page
    assert 'label="Evil&quot;&gt;&lt;script&gt;"' in page


# --- What the picker submits -------------------------------------------------------------------------


def test_parse_choice_accepts_what_the_picker_offers(db, acme_server, unlisted_server):
    acme = make_provider(acme_server)
    quiet = make_provider(unlisted_server, name="Quiet", model_ids="gamma")
    parse = providers.parse_choice
    assert parse(f"p{acme.pk}:alpha", default_provider_id=None, default_model="demo") == (acme.pk, "alpha")
    assert parse(f"p{quiet.pk}:gamma", default_provider_id=None, default_model="demo") == (quiet.pk, "gamma")
    assert parse("any-model?tokens=3", default_provider_id=acme.pk, default_model="x") == (
        None,
        "any-model?tokens=3",
    )
    assert parse("", default_provider_id=acme.pk, default_model="beta") == (acme.pk, "beta")
    assert parse(None, default_provider_id=None, default_model="demo") == (None, "demo")
    # The conversation's current choice, even if its server stopped listing it.
    assert parse(f"p{acme.pk}:retired", default_provider_id=acme.pk, default_model="retired") == (
        acme.pk,
        "retired",
    )


@pytest.mark.parametrize(
    "value",
    [
        "p{acme}:gamma",  # not offered by Acme
        "p{dormant}:alpha",  # a disabled provider
        "p999999:alpha",  # no such provider
        "p{acme}:" + "a" * 201,
        "a" * 201,
        "   ",
        42,
        ["p1:alpha"],
    ],
)
def test_parse_choice_refuses_what_is_not_on_offer(db, acme_server, value):
    acme = make_provider(acme_server)
    dormant = make_provider(acme_server, name="Dormant", enabled=False)
    if isinstance(value, str):
        value = value.format(acme=acme.pk, dormant=dormant.pk)
    with pytest.raises(ValidationError, match=re.escape(providers.CHOOSE_FROM_LIST)):
        providers.parse_choice(value, default_provider_id=None, default_model="demo")


def test_posting_without_a_provider_keeps_the_conversations_provider(alice, acme_server):
    acme = make_provider(acme_server)
    conversation = Conversation.objects.create(owner=alice, model="alpha", provider=acme)
    turn = services.message_post(conversation=conversation, text="Hi", model="beta", worker="w")
    conversation.refresh_from_db()
    assert (turn.reply.provider_id, turn.reply.model) == (acme.pk, "beta")
    assert (conversation.provider_id, conversation.model) == (acme.pk, "beta")


# --- Replies from a provider, through the real path ------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_new_chat_on_a_provider_model_streams_from_that_provider_with_its_key(
    alice, upstream, acme_server
):
    acme = await database_sync_to_async(make_provider)(acme_server)
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.post("/c/new/", {"text": "Hello Acme", "model": f"p{acme.pk}:alpha"})
    assert response.status_code == 303
    async with asyncio.timeout(10):
        await streaming.wait_all()
    conversation = await Conversation.objects.aget(owner=alice)
    reply = await latest_reply(conversation)
    assert (conversation.provider_id, conversation.model) == (acme.pk, "alpha")
    assert (reply.provider_id, reply.model, reply.status) == (acme.pk, "alpha", "complete")
    assert reply.content == reply_text([{"role": "user", "content": "Hello Acme"}], 5)
    assert acme_server.stats.last_headers["authorization"] == f"Bearer {KEY}"
    assert acme_server.stats.last_chat_body["model"] == "alpha"
    assert upstream.stats.last_chat_body is None or "Hello Acme" not in str(upstream.stats.last_chat_body)


@pytest.mark.django_db(transaction=True)
async def test_new_chat_refuses_a_model_the_provider_does_not_offer(alice, upstream, acme_server):
    acme = await database_sync_to_async(make_provider)(acme_server)
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.post("/c/new/", {"text": "Hello", "model": f"p{acme.pk}:gamma"})
    assert response.status_code == 400
    assert "Choose a model from the list." in response.content.decode()
    assert await Conversation.objects.acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_wrong_key_ends_the_reply_with_the_servers_refusal(alice, upstream, acme_server):
    acme = await database_sync_to_async(make_provider)(
        acme_server, key="sk-wrong-0000000000", all_models=False, model_ids="alpha"
    )
    client = AsyncClient()
    await client.aforce_login(alice)
    await client.post("/c/new/", {"text": "Hello", "model": f"p{acme.pk}:alpha"})
    async with asyncio.timeout(10):
        await streaming.wait_all()
    reply = await Message.objects.aget(role="assistant")
    assert reply.status == "error"
    assert reply.error.startswith("The API key was rejected (401).")
    assert "sk-wrong" not in reply.error


@pytest.mark.django_db(transaction=True)
async def test_extra_fields_of_the_provider_go_into_the_request(alice, upstream, acme_server):
    extra = {"top_p": 0.5, "provider": {"order": ["fast"]}, "model": "ignored", "stream": False}
    acme = await database_sync_to_async(make_provider)(acme_server, extra_fields=extra)
    client = AsyncClient()
    await client.aforce_login(alice)
    await client.post("/c/new/", {"text": "Hello", "model": f"p{acme.pk}:beta"})
    async with asyncio.timeout(10):
        await streaming.wait_all()
    body = acme_server.stats.last_chat_body
    assert body["top_p"] == 0.5 and body["provider"] == {"order": ["fast"]}
    assert body["model"] == "beta" and body["stream"] is True


@pytest.mark.django_db(transaction=True)
async def test_regenerate_and_edit_over_the_socket_store_the_chosen_provider(
    alice, alice_conversation, upstream, acme_server
):
    acme = await database_sync_to_async(make_provider)(acme_server)
    first = await database_sync_to_async(stored_turn)(alice_conversation, "Question", "Answer")
    page, _ = await join(alice, alice_conversation)
    await page.send_json_to({"action": "regenerate", "message_id": first.pk, "model": f"p{acme.pk}:beta"})
    await frames_until_final(page)
    regenerated = await latest_reply(alice_conversation)
    assert (regenerated.provider_id, regenerated.model, regenerated.status) == (acme.pk, "beta", "complete")
    # An edit without a model goes to the conversation's current provider and model.
    await page.send_json_to({"action": "edit", "message_id": first.parent_id, "text": "Question, again"})
    await frames_until_final(page)
    edited = await latest_reply(alice_conversation)
    assert edited.pk != regenerated.pk
    assert (edited.provider_id, edited.model, edited.status) == (acme.pk, "beta", "complete")
    assert acme_server.stats.last_chat_body["messages"][-1]["content"] == "Question, again"
    # A plain model id goes back to the environment's server.
    await page.send_json_to({"text": "Back home", "model": "demo?tokens=2"})
    await frames_until_final(page)
    home = await latest_reply(alice_conversation)
    conversation = await Conversation.objects.aget(pk=alice_conversation.pk)
    assert (home.provider_id, home.status) == (None, "complete")
    assert (conversation.provider_id, conversation.model) == (None, "demo?tokens=2")
    await page.disconnect()
    await streaming.wait_all()


@pytest.mark.django_db(transaction=True)
async def test_a_disabled_provider_is_refused_over_the_socket(
    alice, alice_conversation, upstream, acme_server
):
    acme = await database_sync_to_async(make_provider)(acme_server, enabled=False)
    page, _ = await join(alice, alice_conversation)
    await page.send_json_to({"text": "Hello", "model": f"p{acme.pk}:alpha"})
    frame = await page.receive_from(timeout=5)
    assert "Choose a model from the list." in frame
    assert await Message.objects.filter(conversation=alice_conversation).acount() == 0
    await page.disconnect()


def test_the_endpoint_repr_never_shows_the_key(db, acme_server):
    acme = make_provider(acme_server)
    endpoint = providers.endpoint_for(acme.pk)
    assert endpoint.api_key == KEY
    assert KEY not in repr(endpoint) and KEY not in repr(providers.provider_endpoint(acme))
