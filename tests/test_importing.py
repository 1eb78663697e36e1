"""Importing other products' export files through the import page: stored whole, for one user only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from chat import selectors
from chat.models import Conversation, Message

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
