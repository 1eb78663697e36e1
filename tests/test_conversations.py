"""The sidebar's date groups and pages, renaming, and deleting (with pages open on it elsewhere)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta

import pytest
from django.test import AsyncClient
from django.utils import timezone

from chat import sidebar, streaming
from chat.models import Conversation, Message
from tests.factories import stored_turn
from tests.test_consumers import join, latest_reply, send

TODAY = date(2026, 12, 4)


def at(day: date, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour))


@pytest.mark.parametrize(
    ("day", "label"),
    [
        (TODAY, "Today"),
        (TODAY - timedelta(days=1), "Yesterday"),
        (TODAY - timedelta(days=2), "Previous 7 days"),
        (TODAY - timedelta(days=6), "Previous 7 days"),
        (TODAY - timedelta(days=7), "Previous 30 days"),
        (TODAY - timedelta(days=29), "Previous 30 days"),
        (TODAY - timedelta(days=30), "November 2026"),
        (date(2025, 1, 15), "January 2025"),
    ],
)
def test_conversations_are_grouped_by_how_recent_they_are(day, label):
    assert sidebar.group_label(at(day), today=TODAY) == label


def test_a_malformed_cursor_starts_the_list_over():
    for cursor in [
        "",
        "x",
        "2026-12-04T12:00:00_nothex",
        "not-a-date_" + uuid.uuid4().hex,
        "2026-12-04T12:00:00_" + uuid.uuid4().hex,
    ]:
        assert sidebar.decode_cursor(cursor) is None  # the last one is naive: no time zone


def _conversations(owner, count: int, *, start: datetime) -> list[Conversation]:
    """``count`` conversations, one an hour back from ``start`` (two share each hour: ties)."""
    made = [Conversation(owner=owner, title=f"Chat {n}", model="demo") for n in range(count)]
    Conversation.objects.bulk_create(made)
    for n, conversation in enumerate(made):
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=start - timedelta(hours=n // 2))
    return made


@pytest.mark.django_db
def test_pages_cover_every_conversation_once_newest_first_with_no_heading_repeated(alice, bob):
    _conversations(alice, 123, start=timezone.now())
    _conversations(bob, 5, start=timezone.now())
    seen: list[Conversation] = []
    headings: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = sidebar.page(user=alice, cursor=cursor, size=50)
        pages += 1
        for group in page.groups:
            if not group.continued:
                headings.append(group.label)
            seen += group.items
        cursor = page.next_cursor
        if not cursor:
            break
    assert pages == 3
    assert len(seen) == len({c.pk for c in seen}) == 123
    assert {c.owner_id for c in Conversation.objects.filter(pk__in=[c.pk for c in seen])} == {alice.pk}
    keys = [(c.updated_at, c.pk) for c in seen]
    assert keys == sorted(keys, reverse=True)
    assert len(headings) == len(set(headings))  # a group split across pages is headed once


@pytest.mark.django_db
def test_the_first_page_always_has_today_for_a_new_chat_to_join(alice):
    _conversations(alice, 2, start=timezone.now() - timedelta(days=3))
    page = sidebar.page(user=alice)
    assert [g.label for g in page.groups] == ["Today", "Previous 7 days"]
    assert page.groups[0].items == []


@pytest.mark.django_db
def test_the_sidebar_lists_more_than_a_hundred_and_pages_the_rest(client, alice):
    _conversations(alice, 130, start=timezone.now())
    client.force_login(alice)
    first = client.get("/").content.decode()
    assert first.count('class="conversation-title"') == 50
    assert "Older conversations" in first and 'hx-trigger="intersect once"' in first
    cursor = sidebar.page(user=alice).next_cursor
    second = client.get("/conversations/", {"after": cursor}).content.decode()
    assert second.count('class="conversation-title"') == 50
    assert "Chat 50" in second and "Chat 49" not in second
    assert "No conversations yet." not in second


@pytest.mark.django_db
def test_an_empty_sidebar_says_so(client, alice):
    client.force_login(alice)
    assert "No conversations yet." in client.get("/").content.decode()


@pytest.mark.django_db
def test_the_sidebar_page_needs_a_login(client):
    assert client.get("/conversations/").status_code == 302


# --- Rename ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_rename_stores_the_users_title_and_answers_with_it(client, alice, alice_conversation):
    client.force_login(alice)
    response = client.post(f"/c/{alice_conversation.pk}/rename/", {"title": "  Trip   <planning> "})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'class="conversation-title" hx-swap-oob="innerHTML">Trip &lt;planning&gt;</h1>' in body
    assert f'id="title-{alice_conversation.pk}"' in body
    alice_conversation.refresh_from_db()
    assert alice_conversation.title == "Trip <planning>"
    assert alice_conversation.title_source == Conversation.TitleSource.USER


@pytest.mark.django_db
def test_renaming_does_not_move_the_conversation_in_the_list(client, alice, alice_conversation):
    before = alice_conversation.updated_at
    client.force_login(alice)
    client.post(f"/c/{alice_conversation.pk}/rename/", {"title": "New name"})
    alice_conversation.refresh_from_db()
    assert alice_conversation.updated_at == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "error"), [("   ", "A title cannot be empty."), ("x" * 201, "at most 200")]
)
def test_a_bad_title_is_refused_with_a_reason(client, alice, alice_conversation, title, error):
    client.force_login(alice)
    response = client.post(f"/c/{alice_conversation.pk}/rename/", {"title": title})
    assert response.status_code == 400
    assert error in response.content.decode()
    alice_conversation.refresh_from_db()
    assert alice_conversation.title == "Alice's chat"


@pytest.mark.django_db
def test_nobody_renames_or_deletes_someone_elses_conversation(client, bob, alice_conversation):
    client.force_login(bob)
    assert client.post(f"/c/{alice_conversation.pk}/rename/", {"title": "Mine"}).status_code == 404
    assert client.post(f"/c/{alice_conversation.pk}/delete/").status_code == 404
    assert client.get(f"/c/{alice_conversation.pk}/delete/").status_code in (404, 405)
    alice_conversation.refresh_from_db()
    assert alice_conversation.title == "Alice's chat"


@pytest.mark.django_db(transaction=True)
async def test_a_rename_reaches_every_page_open_on_the_conversation(alice, alice_conversation):
    communicator, _ = await join(alice, alice_conversation)
    client = AsyncClient()
    await client.aforce_login(alice)
    await client.post(f"/c/{alice_conversation.pk}/rename/", {"title": "Renamed elsewhere"})
    frames = [await communicator.receive_from(timeout=5) for _ in range(2)]
    assert any('id="conversation-title"' in f and "Renamed elsewhere" in f for f in frames)
    assert any(f'id="title-{alice_conversation.pk}"' in f and "Renamed elsewhere" in f for f in frames)
    await communicator.disconnect()


# --- Delete ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_removes_the_conversation_and_everything_in_it(client, alice, alice_conversation):
    stored_turn(alice_conversation, "Question", "Answer")
    client.force_login(alice)
    response = client.post(f"/c/{alice_conversation.pk}/delete/", headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/"
    assert not Conversation.objects.filter(pk=alice_conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=alice_conversation.pk).exists()
    assert client.get(f"/c/{alice_conversation.pk}/").status_code == 404


@pytest.mark.django_db
def test_delete_without_javascript_goes_back_to_a_new_chat(client, alice, alice_conversation):
    client.force_login(alice)
    response = client.post(f"/c/{alice_conversation.pk}/delete/")
    assert response.status_code == 303 and response["Location"] == "/"


@pytest.mark.django_db(transaction=True)
async def test_a_page_open_elsewhere_is_told_and_its_socket_closes_for_good(alice, alice_conversation):
    communicator, _ = await join(alice, alice_conversation)
    client = AsyncClient()
    await client.aforce_login(alice)
    await client.post(f"/c/{alice_conversation.pk}/delete/")
    frame = await communicator.receive_from(timeout=5)
    assert "This conversation was deleted" in frame and "New chat" in frame
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4403}


@pytest.mark.django_db(transaction=True)
async def test_deleting_during_a_reply_stops_it(alice, alice_conversation, upstream):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "Write a long answer", "demo?tokens=5000&tps=100")
    while 'data-status="streaming"' not in await communicator.receive_from(timeout=5):
        pass  # the reply's row is stored and its generation started
    reply = await latest_reply(alice_conversation)
    generation = streaming.running(reply.pk)
    assert generation is not None
    client = AsyncClient()
    await client.aforce_login(alice)
    await client.post(f"/c/{alice_conversation.pk}/delete/")
    async with asyncio.timeout(5):
        await generation.task  # stopped long before its 50 seconds of tokens
    assert not await Message.objects.filter(pk=reply.pk).aexists()
    await communicator.disconnect()
