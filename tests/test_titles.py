"""Titles written by the model: one side request after the first reply, never in the reply's way."""

from __future__ import annotations

import asyncio

import pytest
from django.test import AsyncClient

from chat import streaming, titles
from chat.models import Conversation, Message
from chat.simulator import reply_text
from tests.test_consumers import frames_until_final, join, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Lisbon trip planning", "Lisbon trip planning"),
        ('"Lisbon Trip Planning."', "Lisbon Trip Planning"),
        ("Title: **Reversing a list in Python**", "Reversing a list in Python"),
        ("# A heading title\n\nwith more lines", "A heading title"),
        (
            "<think>The user wants a title.\nMaybe…</think>\n\nSorting Algorithms Compared",
            "Sorting Algorithms Compared",
        ),
        ("one two three four five six seven eight", "one two three four five six"),
        ("\u201cQuoted title\u201d", "Quoted title"),
        ("   \n  ", ""),
        ("<think>never finished", ""),
    ],
)
def test_the_answer_is_cleaned_to_a_short_title(answer, title):
    assert titles.clean_title(answer) == title


@pytest.fixture
def model_titles(settings, upstream):
    settings.CHAT_MODEL_TITLES = True
    settings.CHAT_TITLE_TIMEOUT = 5
    return upstream


def expected_title(question: str, answer: str, model: str) -> str:
    """What the simulator answers the title request with, cleaned."""
    request = [
        {"role": "system", "content": titles.INSTRUCTION},
        {"role": "user", "content": f"Question: {question}\n\nAnswer: {answer}"},
    ]
    return titles.clean_title(reply_text(request, 40))


async def test_the_first_reply_brings_a_title_from_the_same_model_and_pages_show_it(
    alice, alice_conversation, model_titles
):
    communicator, _ = await join(alice, alice_conversation)
    before = model_titles.stats.chat_requests
    await send(communicator, "How do I plan a week in Lisbon?", "demo?tokens=8")
    await frames_until_final(communicator)
    await streaming.wait_all()
    await titles.wait_all()
    conversation = await Conversation.objects.aget(pk=alice_conversation.pk)
    reply = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")
    assert conversation.title_source == Conversation.TitleSource.MODEL
    assert conversation.title == expected_title("How do I plan a week in Lisbon?", reply.content, "demo")
    assert 0 < len(conversation.title.split()) <= 6
    body = model_titles.stats.last_chat_body
    assert body["stream"] is False and body["model"] == "demo?tokens=8"
    assert model_titles.stats.chat_requests == before + 2  # the reply, then the title
    frames = [await communicator.receive_from(timeout=5) for _ in range(2)]
    assert any('id="conversation-title"' in f and conversation.title in f for f in frames)
    assert any(f'id="title-{conversation.pk}"' in f for f in frames)
    await communicator.disconnect()


async def test_a_conversation_gets_one_title_request_however_many_replies_end(
    alice, alice_conversation, model_titles
):
    communicator, _ = await join(alice, alice_conversation)
    before = model_titles.stats.chat_requests
    for question in ("First", "Second", "Third"):
        await send(communicator, question, "demo?tokens=3")
        await frames_until_final(communicator)
        await streaming.wait_all()
        await titles.wait_all()
    assert model_titles.stats.chat_requests == before + 4  # three replies and one title
    await communicator.disconnect()


async def test_a_rename_during_a_slow_title_request_wins(alice, alice_conversation, model_titles):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "Slow title please", "demo?tokens=3&fault=slow-first-1500")
    await frames_until_final(communicator)  # the reply has ended; its title request is under way
    client = AsyncClient()
    await client.aforce_login(alice)
    await client.post(f"/c/{alice_conversation.pk}/rename/", {"title": "Mine"})
    await streaming.wait_all()
    await titles.wait_all()
    conversation = await Conversation.objects.aget(pk=alice_conversation.pk)
    assert (conversation.title, conversation.title_source) == ("Mine", Conversation.TitleSource.USER)
    await communicator.disconnect()


async def test_a_failed_or_slow_title_keeps_the_first_words_and_is_not_asked_again(
    alice, alice_conversation, model_titles, settings
):
    settings.CHAT_TITLE_TIMEOUT = 0.3
    await Conversation.objects.filter(pk=alice_conversation.pk).aupdate(title="Why is the sky blue?")
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "Why is the sky blue?", "demo?tokens=3&fault=slow-first-800")
    await frames_until_final(communicator)
    await streaming.wait_all()
    await titles.wait_all()
    conversation = await Conversation.objects.aget(pk=alice_conversation.pk)
    assert conversation.title == "Why is the sky blue?"
    assert conversation.title_source == Conversation.TitleSource.REQUESTED
    before = model_titles.stats.chat_requests
    await send(communicator, "And at sunset?", "demo?tokens=3")
    await frames_until_final(communicator)
    await streaming.wait_all()
    await titles.wait_all()
    assert model_titles.stats.chat_requests == before + 1  # the reply only
    await communicator.disconnect()


async def test_the_reply_ends_before_its_title_request_answers(alice, alice_conversation, model_titles):
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "Quick question", "demo?tokens=3&fault=slow-first-1000")
    await frames_until_final(communicator)
    await streaming.wait_all()
    reply = await Message.objects.filter(conversation=alice_conversation, role="assistant").alatest("id")
    assert reply.status == Message.Status.COMPLETE
    assert titles._pending  # the title is still on its way
    conversation = await Conversation.objects.aget(pk=alice_conversation.pk)
    assert conversation.title_source == Conversation.TitleSource.REQUESTED
    await titles.wait_all()
    await communicator.disconnect()


async def test_failed_replies_and_imported_or_renamed_conversations_ask_for_no_title(
    alice, alice_conversation, model_titles
):
    communicator, _ = await join(alice, alice_conversation)
    before = model_titles.stats.chat_requests
    await send(communicator, "This fails", "demo?fault=status-500")
    await frames_until_final(communicator)
    await streaming.wait_all()
    await titles.wait_all()
    assert model_titles.stats.chat_requests == before + 1  # the failed reply; no title
    await Conversation.objects.filter(pk=alice_conversation.pk).aupdate(
        title_source=Conversation.TitleSource.IMPORTED
    )
    before = model_titles.stats.chat_requests
    await send(communicator, "Now it works", "demo?tokens=3")
    await frames_until_final(communicator)
    await streaming.wait_all()
    await titles.wait_all()
    assert model_titles.stats.chat_requests == before + 1
    await communicator.disconnect()


async def test_titles_can_be_switched_off(alice, alice_conversation, model_titles, settings):
    settings.CHAT_MODEL_TITLES = False
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "No title", "demo?tokens=3")
    await frames_until_final(communicator)
    await streaming.wait_all()
    await asyncio.sleep(0)
    assert not titles._pending
    conversation = await Conversation.objects.aget(pk=alice_conversation.pk)
    assert conversation.title_source == Conversation.TitleSource.QUESTION
    await communicator.disconnect()
