"""Exports: Markdown of the branch on screen, JSON of everything, all of a user's conversations streamed."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient, Client

from chat.models import Conversation, Message
from tests.factories import stored_turn


@pytest.fixture
def branched(alice_conversation) -> Conversation:
    """A conversation whose second question was asked twice (two versions); the second is shown."""
    first = stored_turn(alice_conversation, "What is 2 + 2?", "4", reasoning="Add them.", completion_tokens=1)
    root = first.parent
    stored_turn(alice_conversation, "And 3 + 3?", "6")
    alice_conversation.current_leaf = first
    alice_conversation.save(update_fields=["current_leaf"])
    stored_turn(alice_conversation, "And 4 + 4?", "8")
    alice_conversation.title = "Sums: 2 + 2 & more"
    alice_conversation.save(update_fields=["title"])
    assert root is not None
    return alice_conversation


@pytest.fixture
def alice_client(client: Client, alice) -> Client:
    client.force_login(alice)
    return client


def test_json_export_keeps_every_version_and_the_shown_branch(alice_client, branched):
    response = alice_client.get(f"/c/{branched.pk}/export.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="sums-2-2-more.json"'
    (record,) = json.loads(response.content)
    assert record["format"] == "chat-export/1" and record["title"] == "Sums: 2 + 2 & more"
    messages = {m["id"]: m for m in record["messages"]}
    assert len(messages) == 6  # both versions of the second turn
    assert sorted(m["content"] for m in messages.values() if m["role"] == "user") == [
        "And 3 + 3?",
        "And 4 + 4?",
        "What is 2 + 2?",
    ]
    shown = messages[record["current_message"]]
    assert shown["content"] == "8" and messages[messages[shown["parent"]]["parent"]]["content"] == "4"
    four = next(m for m in messages.values() if m["content"] == "4")
    assert (four["reasoning"], four["completion_tokens"], four["status"]) == ("Add them.", 1, "complete")


def test_markdown_export_reads_the_branch_on_screen(alice_client, branched):
    response = alice_client.get(f"/c/{branched.pk}/export.md")
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    text = response.content.decode()
    assert text.startswith("# Sums: 2 + 2 & more\n")
    assert "## User\n\nAnd 4 + 4?" in text and "And 3 + 3?" not in text  # only the shown version
    assert "<summary>Thinking</summary>\n\nAdd them." in text
    assert text.index("What is 2 + 2?") < text.index("And 4 + 4?")


def test_exports_are_the_owners_only(client: Client, branched, bob):
    assert client.get(f"/c/{branched.pk}/export.json").status_code == 302  # signed out: to the login
    client.force_login(bob)
    assert client.get(f"/c/{branched.pk}/export.json").status_code == 404
    assert client.get(f"/c/{branched.pk}/export.md").status_code == 404


def test_the_conversation_page_links_its_exports_and_the_sidebar_exports_all(alice_client, branched):
    page = alice_client.get(f"/c/{branched.pk}/").content.decode()
    assert f'href="/c/{branched.pk}/export.md" download>Markdown</a>' in page
    assert f'href="/c/{branched.pk}/export.json" download>JSON</a>' in page
    assert '<a href="/export/" download>Export all</a>' in page


@pytest.mark.django_db(transaction=True)
async def test_export_all_streams_every_conversation_of_the_user_newest_first(alice, bob):
    for number in range(3):
        conversation = await Conversation.objects.acreate(owner=alice, title=f"Chat {number}", model="demo")
        await Message.objects.acreate(conversation=conversation, role="user", content=f"Question {number}")
    await Conversation.objects.acreate(owner=bob, title="Not Alice's", model="demo")
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.get("/export/")
    assert response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="conversations.json"'
    chunks = [chunk async for chunk in response.streaming_content]
    assert len(chunks) == 5  # "[", one per conversation, "]"
    records = json.loads(b"".join(chunks))
    assert [r["title"] for r in records] == ["Chat 2", "Chat 1", "Chat 0"]
    assert records[0]["messages"][0]["content"] == "Question 2"


@pytest.mark.django_db(transaction=True)
async def test_export_all_of_no_conversations_is_an_empty_list(alice):
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.get("/export/")
    assert json.loads(b"".join([chunk async for chunk in response.streaming_content])) == []


def _without_ids(record: dict) -> dict:
    """A record with each message id replaced by its place: ids are the database's, not content."""
    place = {m["id"]: n for n, m in enumerate(record["messages"])}
    messages = [
        {**m, "id": place[m["id"]], "parent": place.get(m["parent"]) if m["parent"] is not None else None}
        for m in record["messages"]
    ]
    return {**record, "id": None, "messages": messages, "current_message": place[record["current_message"]]}


def test_export_import_export_gives_the_same_conversation(alice_client, branched, alice):
    branched.system_prompt = "Answer in digits."
    branched.temperature = 0.3
    branched.model = "some-other-model"
    branched.save(update_fields=["system_prompt", "temperature", "model"])
    Message.objects.filter(conversation=branched, content="6").update(
        status=Message.Status.STOPPED, finish_reason="", duration_ms=1200, first_token_ms=80
    )
    exported = alice_client.get(f"/c/{branched.pk}/export.json").content
    response = alice_client.post(
        "/import/", {"file": SimpleUploadedFile("sums.json", exported, "application/json")}
    )
    assert "Imported 1 conversation (6 messages)." in response.content.decode()
    copy = Conversation.objects.filter(owner=alice).exclude(pk=branched.pk).get()
    (before,) = json.loads(exported)
    (after,) = json.loads(alice_client.get(f"/c/{copy.pk}/export.json").content)
    assert _without_ids(after) == _without_ids(before)
    # and it is a conversation like any other: it opens on the branch that was shown
    page = alice_client.get(f"/c/{copy.pk}/").content.decode()
    assert "And 4 + 4?" in page and "And 3 + 3?" not in page


def test_an_own_export_with_a_broken_message_imports_nothing(alice_client, branched, alice):
    (record,) = json.loads(alice_client.get(f"/c/{branched.pk}/export.json").content)
    record["messages"][1]["completion_tokens"] = "many"
    response = alice_client.post(
        "/import/", {"file": SimpleUploadedFile("x.json", json.dumps([record]).encode(), "application/json")}
    )
    assert response.status_code == 400
    assert "whose completion tokens is not a count" in response.content.decode()
    assert Conversation.objects.filter(owner=alice).count() == 1
