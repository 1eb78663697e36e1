"""Importing other products' export files through the import page: stored whole, for one user only."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from bench.imports import open_webui_record
from chat import import_progress, importing, selectors
from chat.importers import ImportFormatError
from chat.models import Conversation, Message
from chat.routing import websocket_urlpatterns

SAMPLES = Path(__file__).parent / "importer_samples"
OPEN_WEBUI = SAMPLES / "open-webui-0.12.4-export.json"
CHATGPT = SAMPLES / "chatgpt-conversations.json"


def upload(client: Client, name: str, content: bytes):
    return client.post("/import/", {"file": SimpleUploadedFile(name, content, "application/json")})


@pytest.fixture
def alice_client(client: Client, alice) -> Client:
    client.force_login(alice)
    return client


def shown_texts(conversation: Conversation) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in selectors.conversation_messages(conversation=conversation)]


def test_the_import_page_is_linked_from_the_sidebar_and_labels_its_file_input(alice_client):
    page = alice_client.get("/").content.decode()
    assert '<a href="/import/">Import</a>' in page
    form = alice_client.get("/import/").content.decode()
    assert '<label for="id_file">Import conversations' in form
    assert '<button type="submit">Import</button>' in form


def test_open_webui_export_becomes_the_users_conversations(alice_client, alice):
    response = upload(alice_client, OPEN_WEBUI.name, OPEN_WEBUI.read_bytes())
    assert response.status_code == 200
    page = response.content.decode()
    assert "Imported 3 conversations (8 messages)." in page
    conversations = {c.title: c for c in Conversation.objects.filter(owner=alice)}
    assert set(conversations) == {
        "A table and a function?",
        "Think first, then greet me.",
        "Show me some Markdown, please.",
    }
    for title in conversations:
        assert f">{title}</span></a>" in page  # the sidebar lists them
    table = conversations["A table and a function?"]
    assert [role for role, _ in shown_texts(table)] == ["user", "assistant"]
    reply = Message.objects.get(pk=table.current_leaf_id)
    assert "<table>" in reply.content_html and 'class="highlight"' in reply.content_html  # rendered once, now
    assert reply.model == "qwen2.5-coder:7b"
    assert table.created_at == datetime.fromtimestamp(1796411588, UTC)
    thinking = Message.objects.get(pk=conversations["Think first, then greet me."].current_leaf_id)
    assert thinking.reasoning and thinking.reasoning not in thinking.content
    assert thinking.reasoning_html


def test_chatgpt_export_keeps_the_edited_message_as_two_versions_and_the_shown_branch(alice_client, alice):
    response = upload(alice_client, "conversations.json", CHATGPT.read_bytes())
    assert "Imported 2 conversations" in response.content.decode()
    conversation = Conversation.objects.get(owner=alice, title="Reverse a list")
    messages = selectors.conversation_messages(conversation=conversation)
    assert any(len(m.versions) == 2 for m in messages if m.role == "user")  # the edit: two versions
    sample = json.loads(CHATGPT.read_text())[0]
    shown_leaf = sample["mapping"][sample["current_node"]]["message"]["content"]["parts"][0]
    assert messages[-1].content == shown_leaf
    assert all("execution_output" not in m.content for m in messages)
    assert conversation.system_prompt is None  # the hidden system node is not a prompt the user wrote


def test_a_file_broken_after_its_first_conversation_imports_nothing(alice_client, alice):
    good = OPEN_WEBUI.read_text()
    cut = good[: good.index('"title": "Think first')]  # the second conversation is cut off
    response = upload(alice_client, "export.json", cut.encode())
    assert response.status_code == 400
    page = response.content.decode()
    assert "The file is not valid JSON" in page or "ends in the middle" in page
    assert not Conversation.objects.filter(owner=alice).exists()


def test_a_file_of_another_kind_is_refused_with_a_sentence(alice_client, alice):
    response = upload(alice_client, "notes.json", b'{"notes": []}')
    assert response.status_code == 400
    assert "This file is not an export from Open WebUI or ChatGPT" in response.content.decode()
    assert not Conversation.objects.exists()


def test_imported_conversations_belong_to_the_importer_only(alice_client, alice, bob):
    upload(alice_client, OPEN_WEBUI.name, OPEN_WEBUI.read_bytes())
    conversation = Conversation.objects.filter(owner=alice).first()
    assert alice_client.get(f"/c/{conversation.pk}/").status_code == 200
    other = Client()
    other.force_login(bob)
    assert other.get(f"/c/{conversation.pk}/").status_code == 404
    assert not Conversation.objects.filter(owner=bob).exists()


def test_an_imported_conversation_opens_with_its_text(alice_client, alice):
    upload(alice_client, OPEN_WEBUI.name, OPEN_WEBUI.read_bytes())
    conversation = Conversation.objects.get(owner=alice, title="A table and a function?")
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "A table and a function?" in page and "<table>" in page


def test_the_import_page_needs_a_signed_in_user(client: Client, db):
    assert client.get("/import/").status_code == 302
    assert upload(client, OPEN_WEBUI.name, OPEN_WEBUI.read_bytes()).status_code == 302
    assert not Conversation.objects.exists()


# Large files: two passes, progress, and the progress socket


def generated_export(conversations: int) -> bytes:
    return json.dumps([open_webui_record(number, repeats=1) for number in range(conversations)]).encode()


def test_a_file_broken_at_its_end_is_refused_before_anything_is_written(alice):
    good = generated_export(20)
    broken = good[:-30]  # the last conversation is cut short
    with CaptureQueriesContext(connection) as queries, pytest.raises(ImportFormatError):
        importing.import_file(user=alice, file=io.BytesIO(broken))
    assert not [
        q for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE"))
    ]
    assert not Conversation.objects.filter(owner=alice).exists()


def test_progress_reports_bytes_while_checking_then_conversations_of_the_total_while_writing(alice):
    export = generated_export(12)
    reports: list[importing.ImportProgress] = []
    result = importing.import_file(user=alice, file=io.BytesIO(export), progress=reports.append, every=0)
    checking = [r for r in reports if r.phase == importing.CHECKING]
    writing = [r for r in reports if r.phase == importing.WRITING]
    assert reports.index(writing[0]) == len(checking)  # every check comes before any write
    assert [r.conversations for r in checking] == list(range(13)) and {r.total for r in checking} == {None}
    positions = [r.bytes_read for r in checking]
    assert positions == sorted(positions) and {r.size for r in reports} == {len(export)}
    assert [(r.conversations, r.total) for r in writing] == [(n, 12) for n in range(13)]
    assert (result.conversations, result.messages) == (12, 12 * 9)


def test_progress_is_reported_at_most_every_interval(alice):
    reports: list[importing.ImportProgress] = []
    importing.import_file(
        user=alice, file=io.BytesIO(generated_export(30)), progress=reports.append, every=3600
    )
    assert [(r.phase, r.conversations) for r in reports] == [(importing.CHECKING, 0), (importing.WRITING, 0)]


def test_the_form_carries_a_fresh_progress_token_and_ignores_a_bad_one(alice_client, alice):
    first = alice_client.get("/import/").content.decode()
    second = alice_client.get("/import/").content.decode()
    token = re.search(r'name="progress" value="([^"]+)"', first)[1]
    assert import_progress.is_token(token) and token not in second
    response = alice_client.post(
        "/import/",
        {"file": SimpleUploadedFile("x.json", OPEN_WEBUI.read_bytes()), "progress": "import.<script>"},
    )
    assert "Imported 3 conversations" in response.content.decode()


def progress_socket(user, token: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/import/{token}/")
    communicator.scope["user"] = user
    return communicator


TOKEN = "k3Y-progress_token1"


@pytest.mark.django_db(transaction=True)
async def test_the_page_hears_its_import_progress_on_its_socket_and_bob_does_not(alice, bob):
    mine, theirs = progress_socket(alice, TOKEN), progress_socket(bob, TOKEN)
    assert (await mine.connect())[0] and (await theirs.connect())[0]
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    export = generated_export(5)
    response = await database_sync_to_async(client.post)(
        "/import/", {"file": SimpleUploadedFile("x.json", export), "progress": TOKEN}
    )
    assert response.status_code == 200
    reports = []
    while not await mine.receive_nothing(timeout=0.2):
        reports.append(await mine.receive_json_from())
    assert reports[0] == {
        "phase": "checking",
        "bytes_read": 0,
        "size": len(export),
        "conversations": 0,
        "total": None,
    }
    assert reports[-1]["phase"] == "writing" and reports[-1]["total"] == 5
    assert await theirs.receive_nothing(timeout=0.2)  # same token, another user: another group
    await mine.disconnect()
    await theirs.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("token", [TOKEN, "short", "x" * 65, "dots.are.not.allowed.here"])
async def test_the_progress_socket_refuses_strangers_and_tokens_that_cannot_name_a_group(alice, token):
    anonymous = progress_socket(AnonymousUser(), token)
    connected, code = await anonymous.connect()
    assert (connected, code) == (False, import_progress.CLOSE_FORBIDDEN)
    if token != TOKEN:
        signed_in = progress_socket(alice, token)
        assert await signed_in.connect() == (False, import_progress.CLOSE_FORBIDDEN)
