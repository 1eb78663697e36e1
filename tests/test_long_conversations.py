"""Long conversations open with their latest messages; older ones come a page at a time."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import rendering, selectors
from chat.models import Message
from tests.factories import stored_turn

pytestmark = pytest.mark.django_db

SHOWN = re.compile(r'<article id="m-(\d+)"')


@pytest.fixture
def long_conversation(alice_conversation):
    for n in range(80):  # 160 messages
        stored_turn(alice_conversation, f"Question {n}", f"Answer {n}", content_html=f"<p>Answer {n}</p>")
    alice_conversation.refresh_from_db()
    return alice_conversation


def shown_ids(html: str) -> list[int]:
    return [int(found) for found in SHOWN.findall(html)]


def test_a_page_opens_with_the_latest_messages_and_a_way_to_older_ones(client, alice, long_conversation):
    client.force_login(alice)
    page = client.get(long_conversation.get_absolute_url()).content.decode()
    path, _ = selectors.branch_path(long_conversation)
    assert shown_ids(page) == path[-selectors.WINDOW :]
    assert "Answer 79" in page and "Question 55" in page and "Question 54" not in page
    assert f'?before={path[-selectors.WINDOW]}"' in page
    assert 'hx-trigger="click, intersect once"' in page


def test_older_pages_cover_the_branch_once_back_to_its_first_message(client, alice, long_conversation):
    client.force_login(alice)
    path, _ = selectors.branch_path(long_conversation)
    seen = path[-selectors.WINDOW :]
    before = seen[0]
    while True:
        older = client.get(f"/c/{long_conversation.pk}/messages/", {"before": before}).content.decode()
        ids = shown_ids(older)
        seen = ids + seen
        if "Load earlier messages" not in older:
            break
        before = ids[0]
        assert f"?before={before}" in older
    assert seen == path


def test_a_short_conversation_has_nothing_older_to_load(client, alice, alice_conversation):
    stored_turn(alice_conversation, "Hi", "Hello")
    client.force_login(alice)
    assert "Load earlier messages" not in client.get(alice_conversation.get_absolute_url()).content.decode()


def test_opening_costs_the_same_queries_whatever_the_length(alice_conversation, long_conversation):
    with CaptureQueriesContext(connection) as long_queries:
        selectors.shown_messages(conversation=long_conversation)
    with CaptureQueriesContext(connection) as short_queries:
        selectors.conversation_messages(conversation=long_conversation, latest=1)
    assert len(long_queries) == len(short_queries) == 2  # the tree (ids only), then the shown rows


def test_the_older_page_refuses_nonsense_and_other_users(client, alice, bob, long_conversation):
    client.force_login(alice)
    for before in ["", "x", "-1", "1" * 40]:
        assert client.get(f"/c/{long_conversation.pk}/messages/", {"before": before}).status_code == 400
    client.force_login(bob)
    assert client.get(f"/c/{long_conversation.pk}/messages/", {"before": "1"}).status_code == 404


def test_opening_at_a_message_shows_everything_from_it_to_the_latest(client, alice, long_conversation):
    client.force_login(alice)
    path, _ = selectors.branch_path(long_conversation)
    target = path[10]
    page = client.get(long_conversation.get_absolute_url(), {"m": target}).content.decode()
    assert shown_ids(page) == path[10:]
    assert "Load earlier messages" in page


def test_opening_at_a_message_of_another_version_shows_that_version(client, alice, long_conversation):
    first_question = Message.objects.get(conversation=long_conversation, content="Question 0")
    other = Message.objects.create(  # a second version of the first question, as an edit makes
        conversation=long_conversation, parent=None, role="user", content="Question 0, asked otherwise"
    )
    assert other.parent_id == first_question.parent_id
    client.force_login(alice)
    page = client.get(long_conversation.get_absolute_url(), {"m": other.pk}).content.decode()
    assert shown_ids(page) == [other.pk]
    assert "Version 2 of 2" in page
    long_conversation.refresh_from_db()
    assert long_conversation.current_leaf_id == other.pk


def test_a_redrawn_branch_keeps_the_window_and_its_older_control(long_conversation):
    frames = rendering.branch_frames(selectors.shown_messages(conversation=long_conversation))
    html = "".join(frames)
    assert "Load earlier messages" in html
    assert len(shown_ids(html)) == selectors.WINDOW
