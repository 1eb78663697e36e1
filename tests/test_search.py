"""Search: one user's titles and messages through the full-text index, kept current by the writes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import search, services
from chat.models import Conversation, Message
from tests.factories import stored_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def library(alice, bob):
    tides = Conversation.objects.create(owner=alice, title="Tides and moons", model="demo")
    search.index_title([tides.pk])
    stored_turn(tides, "Why are there tides?", "Mostly the moon's pull, and the sun's a little.")
    bread = Conversation.objects.create(owner=alice, title="Baking", model="demo")
    search.index_title([bread.pk])
    stored_turn(bread, "How long should sourdough proof?", "Overnight in the fridge works well.")
    secret = Conversation.objects.create(owner=bob, title="Bob's tides", model="demo")
    search.index_title([secret.pk])
    stored_turn(secret, "Private question about tides", "Private answer about the moon.")
    return tides, bread, secret


def found(user, query: str) -> list[tuple[str, str]]:
    return [(hit.title, hit.role or "title") for hit in search.search(user=user, query=query)]


def test_a_word_in_a_reply_finds_it_and_only_in_the_users_own_conversations(alice, bob, library):
    assert found(alice, "pull") == [("Tides and moons", "assistant")]
    assert found(bob, "pull") == []
    assert found(alice, "private") == []
    assert found(bob, "private") == [("Bob's tides", "assistant"), ("Bob's tides", "user")]


def test_titles_match_and_come_first(alice, library):
    assert found(alice, "tides") == [("Tides and moons", "title"), ("Tides and moons", "user")]


def test_every_word_must_match_and_the_last_is_a_prefix(alice, library):
    assert found(alice, "sourdough pro") == [("Baking", "user")]
    assert found(alice, "sourdough moon") == []
    assert found(alice, "fri") == [("Baking", "assistant")]


def test_hostile_or_empty_queries_find_nothing_and_never_fail(alice, library):
    for query in ['"', "*", "moon OR", "-moon", "body:moon", "NEAR(a b)", "'; DROP TABLE", "", "   ", "^"]:
        search.search(user=alice, query=query)  # no exception
    assert found(alice, '"pull"') == [("Tides and moons", "assistant")]
    assert found(alice, "") == []


def test_snippets_are_escaped_and_mark_the_matches(alice):
    conversation = Conversation.objects.create(owner=alice, title="Markup", model="demo")
    stored_turn(conversation, "Show me", "Use <script>alert(1)</script> never; the word needle is here.")
    (hit,) = [h for h in search.search(user=alice, query="needle") if h.message_id]
    assert "<script>" not in hit.snippet and "&lt;script&gt;" in hit.snippet
    assert "<mark>needle</mark>" in hit.snippet
    assert hit.url == f"/c/{conversation.pk}/?m={hit.message_id}#m-{hit.message_id}"


def test_a_long_message_is_cut_around_the_match():
    text = "word " * 200 + "needle" + " more" * 200
    snippet = search.highlight(text, ["needle"])
    assert snippet.startswith("…") and snippet.endswith("…") and "<mark>needle</mark>" in snippet
    assert len(snippet) < 220


def test_a_reply_is_indexed_when_it_ends_not_while_it_streams(alice, posted_turn):
    reply = posted_turn.reply
    services.reply_checkpoint(reply_id=reply.pk, text="streaming zebra text")
    assert found(alice, "zebra") == []
    ending = services.ReplyEnding(status=Message.Status.COMPLETE, text="final zebra text")
    services.reply_finish(reply_id=reply.pk, ending=ending)
    assert [hit.message_id for hit in search.search(user=alice, query="zebra")] == [reply.pk]
    assert [hit.message_id for hit in search.search(user=alice, query="hello")] == [
        posted_turn.user_message.pk
    ]


def test_renaming_and_deleting_keep_the_index_current(alice, library):
    tides = library[0]
    services.conversation_rename(conversation=tides, title="Ocean questions")
    assert ("Ocean questions", "title") in found(alice, "ocean")
    assert ("Tides and moons", "title") not in found(alice, "tides")
    services.conversation_delete(conversation=tides)
    assert found(alice, "ocean") == [] and found(alice, "moon") == []


def test_the_search_page_and_the_sidebars_results(client, alice, library):
    client.force_login(alice)
    live = client.get("/search/", {"q": "pull"}, headers={"HX-Request": "true"}).content.decode()
    assert "1 match for “pull”" in live and "<mark>pull</mark>" in live
    assert "<html" not in live
    assert client.get("/search/", {"q": ""}, headers={"HX-Request": "true"}).content == b""
    page = client.get("/search/", {"q": "nothing-like-this"}).content.decode()
    assert "No conversations match “nothing-like-this”." in page and "<html" in page
    home = client.get("/").content.decode()
    assert '<label for="search-input" class="visually-hidden">Search conversations</label>' in home


def test_search_needs_a_login(client):
    assert client.get("/search/", {"q": "x"}).status_code == 302


def test_the_admins_searches_use_the_index_not_like(admin_client, library):
    with CaptureQueriesContext(connection) as queries:
        messages_page = admin_client.get("/admin/chat/message/", {"q": "moon"}).content.decode()
        conversations_page = admin_client.get("/admin/chat/conversation/", {"q": "proof"}).content.decode()
    assert "Mostly the moon" in messages_page and "Private answer about the moon" in messages_page
    assert "Baking" in conversations_page and "Tides and moons" not in conversations_page
    searching = [q["sql"] for q in queries if "chat_message_fts" in q["sql"]]
    assert searching
    assert not any("LIKE" in sql and "content" in sql for sql in (q["sql"] for q in queries))


def test_a_request_id_is_found_exactly_in_the_admin(admin_client, alice_conversation):
    stored_turn(alice_conversation, "Q", "A", request_id="req_0123456789abcdef")
    page = admin_client.get("/admin/chat/message/", {"q": "req_0123456789abcdef"}).content.decode()
    assert "req_0123456789abcdef" in page and "0 messages" not in page


def test_imports_are_indexed(client, alice, tmp_path):
    import json

    record = {
        "id": "c1",
        "title": "Imported chat",
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_000,
        "chat": {
            "history": {
                "currentId": "b",
                "messages": {
                    "a": {
                        "id": "a",
                        "parentId": None,
                        "childrenIds": ["b"],
                        "role": "user",
                        "content": "Kangaroo facts?",
                        "timestamp": 1_700_000_000,
                    },
                    "b": {
                        "id": "b",
                        "parentId": "a",
                        "childrenIds": [],
                        "role": "assistant",
                        "content": "They hop.",
                        "timestamp": 1_700_000_001,
                    },
                },
            }
        },
    }
    client.force_login(alice)
    upload = tmp_path / "export.json"
    upload.write_text(json.dumps([record]))
    with upload.open("rb") as file:
        client.post("/import/", {"file": file})
    assert found(alice, "kangaroo") == [("Imported chat", "user")]
    assert found(alice, "imported") == [("Imported chat", "title")]


def test_indexing_a_message_twice_changes_nothing(alice, library):
    message = Message.objects.get(content="Why are there tides?")
    search.index_messages([message.pk, message.pk])
    search.index_messages([message.pk])
    assert [hit.message_id for hit in search.search(user=alice, query="why")] == [message.pk]


def test_a_title_edited_in_the_admin_is_searched(admin_client, alice, library):
    tides = library[0]
    total = tides.messages.count()
    form = {
        "title": "Lunar notes",
        "provider": "",
        "model": tides.model,
        "system_prompt": "",
        "temperature": "",
        "max_tokens": "",
        "messages-TOTAL_FORMS": str(total),
        "messages-INITIAL_FORMS": str(total),
        "messages-MIN_NUM_FORMS": "0",
        "messages-MAX_NUM_FORMS": "1000",
    }
    for n, message in enumerate(tides.messages.order_by("created_at", "id")):
        form[f"messages-{n}-id"] = str(message.pk)
        form[f"messages-{n}-conversation"] = str(tides.pk)
    response = admin_client.post(f"/admin/chat/conversation/{tides.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert found(alice, "lunar") == [("Lunar notes", "title")]
    assert ("Tides and moons", "title") not in found(alice, "tides")
