"""Titles written by the model: one side request after the first reply, never in the reply's way.

The simulator serves the title request as a real server would (``stream: false``); the model name's
``answer`` option chooses the title's text and ``answer_fault`` delays or fails the title request
alone, while the replies stream as usual.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
from django.test import AsyncClient

from chat import streaming, titles
from chat.models import Conversation, Message
from chat.simulator import reply_text
from chat.upstream import ChatRequest, UpstreamError, complete_chat
from tests.test_consumers import frames_until_final, join, send
from tests.test_simulator import eventually

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Lisbon trip planning", "Lisbon trip planning"),
        ('"Lisbon Trip Planning."', "Lisbon Trip Planning"),
        ("Title: **Reversing a list in Python**", "Reversing a list in Python"),
        ("**Title:** Reversing a list", "Reversing a list"),
        ("# A heading title\n\nwith more lines", "A heading title"),
        ("\n\n  Leading blank lines  \n", "Leading blank lines"),
        (
            "<think>The user wants a title.\nMaybe…</think>\n\nSorting Algorithms Compared",
            "Sorting Algorithms Compared",
        ),
        ("<thinking>hmm</thinking>Cache Invalidation Basics", "Cache Invalidation Basics"),
        ("one two three four five six seven eight", "one two three four five six"),
        ("\u201cQuoted title\u201d", "Quoted title"),
        ("\u00abGuillemets\u00bb!", "Guillemets"),
        ("- *Python* lists explained", "Python lists explained"),
        ("1. Numbered title", "Numbered title"),
        ("[Linked title](https://example.com)", "Linked title"),
        ("`snake_case` naming rules", "snake_case naming rules"),
        ("Bell\x07 and\ttab", "Bell and tab"),
        ("Wait for it \u2014", "Wait for it"),
        ("Title IX explained", "Title IX explained"),
        ("Title:\n\nLisbon Trip", "Lisbon Trip"),
        ("What is C++?", "What is C++"),
        ("   \n  ", ""),
        ("<think>never finished", ""),
        ('"."', ""),
    ],
)
def test_the_answer_is_cleaned_to_a_short_title(answer, title):
    assert titles.clean_title(answer) == title


def test_a_title_fits_its_field():
    title = titles.clean_title(" ".join(["x" * 150] * 3))
    assert title == "x" * 150 + " " + "x" * 49


@pytest.fixture
def model_titles(settings, upstream):
    settings.CHAT_MODEL_TITLES = True
    settings.CHAT_TITLE_TIMEOUT = 5
    return upstream


def model(tokens: int = 3, **options: str) -> str:
    """A simulator model name: replies of ``tokens`` words, and options for the title request."""
    extra = "".join(f"&{key}={quote(value, safe='')}" for key, value in options.items())
    return f"demo?tokens={tokens}{extra}"


async def first_reply(alice, conversation, question: str, model_name: str):
    """Send the conversation's first question and read until its reply has ended."""
    communicator, _ = await join(alice, conversation)
    await send(communicator, question, model_name)
    await frames_until_final(communicator)
    await streaming.wait_all()
    return communicator


async def stored(conversation) -> tuple[str, str]:
    row = await Conversation.objects.aget(pk=conversation.pk)
    return row.title, row.title_source


async def title_asked(simulator, requests: int) -> None:
    """Wait until the simulator has received ``requests`` chat requests (the title's among them)."""
    await eventually(lambda: simulator.stats.chat_requests >= requests, within=10)


async def test_the_first_reply_brings_a_title_from_the_same_model_and_pages_show_it(
    alice, alice_conversation, model_titles
):
    before = model_titles.stats.chat_requests
    communicator = await first_reply(alice, alice_conversation, "How do I plan a week in Lisbon?", model(8))
    await titles.wait_all()
    reply = await Message.objects.filter(conversation=alice_conversation, role="assistant").alatest("id")
    title = titles.clean_title(
        reply_text(
            [
                {"role": "system", "content": titles.INSTRUCTION},
                {
                    "role": "user",
                    "content": f"Question: How do I plan a week in Lisbon?\n\nAnswer: {reply.content}",
                },
            ],
            8,
        )
    )
    assert await stored(alice_conversation) == (title, Conversation.TitleSource.MODEL)
    assert 0 < len(title.split()) <= 6
    body = model_titles.stats.last_chat_body
    assert body["stream"] is False and body["model"] == "demo?tokens=8"
    assert body["max_tokens"] == titles.TITLE_MAX_TOKENS
    assert model_titles.stats.chat_requests == before + 2  # the reply, then the title
    frames = [await communicator.receive_from(timeout=5) for _ in range(2)]
    assert any('id="conversation-title"' in f and title in f for f in frames)
    assert any(f'id="title-{alice_conversation.pk}"' in f and title in f for f in frames)
    await communicator.disconnect()


async def test_the_title_is_what_the_model_answered_cleaned(alice, alice_conversation, model_titles):
    answer = '<think>A short one.</think>\n**Title:** "Lisbon in Seven Days."\nAnything else?'
    communicator = await first_reply(alice, alice_conversation, "A week in Lisbon?", model(answer=answer))
    await titles.wait_all()
    assert await stored(alice_conversation) == ("Lisbon in Seven Days", Conversation.TitleSource.MODEL)
    await communicator.disconnect()


async def test_a_title_with_markup_reaches_pages_escaped(alice, alice_conversation, model_titles):
    answer = '<img src=x onerror="alert(1)"> hx-get=/x'
    communicator = await first_reply(alice, alice_conversation, "Hostile", model(answer=answer))
    await titles.wait_all()
    title, source = await stored(alice_conversation)
    assert source == Conversation.TitleSource.MODEL and title.startswith("<img")
    frames = [await communicator.receive_from(timeout=5) for _ in range(2)]
    for frame in frames:
        assert "<img" not in frame and "&lt;img" in frame
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


async def test_two_endings_at_once_make_one_title_request(alice, alice_conversation, model_titles):
    """As when two workers end replies of one conversation together: the claim lets one ask."""
    communicator = await first_reply(alice, alice_conversation, "Race", model(answer_fault="slow-first-300"))
    await titles.wait_all()  # the reply's own title request
    await Conversation.objects.filter(pk=alice_conversation.pk).aupdate(
        title_source=Conversation.TitleSource.QUESTION
    )
    reply = await Message.objects.filter(conversation=alice_conversation, role="assistant").alatest("id")
    before = model_titles.stats.chat_requests
    for _ in range(4):
        titles.maybe_start(reply)
    await titles.wait_all()
    assert model_titles.stats.chat_requests == before + 1
    assert (await stored(alice_conversation))[1] == Conversation.TitleSource.MODEL
    await communicator.disconnect()


async def test_a_rename_during_a_slow_title_request_wins(alice, alice_conversation, model_titles):
    before = model_titles.stats.chat_requests
    communicator = await first_reply(
        alice, alice_conversation, "Slow title please", model(answer_fault="slow-first-2500")
    )
    await title_asked(model_titles, before + 2)  # the reply has ended; its title request is under way
    assert titles._pending
    client = AsyncClient()
    await client.aforce_login(alice)
    await client.post(f"/c/{alice_conversation.pk}/rename/", {"title": "Mine"})
    await titles.wait_all()
    assert model_titles.stats.last_chat_body["stream"] is False  # the title was asked, and answered
    assert await stored(alice_conversation) == ("Mine", Conversation.TitleSource.USER)
    await communicator.disconnect()


async def test_a_rename_by_the_service_during_the_request_wins(alice, alice_conversation, model_titles):
    before = model_titles.stats.chat_requests
    communicator = await first_reply(
        alice, alice_conversation, "Slow title please", model(answer_fault="slow-first-2000")
    )
    await title_asked(model_titles, before + 2)
    await Conversation.objects.filter(pk=alice_conversation.pk).aupdate(
        title="Renamed", title_source=Conversation.TitleSource.USER
    )
    await titles.wait_all()
    assert await stored(alice_conversation) == ("Renamed", Conversation.TitleSource.USER)
    await communicator.disconnect()


@pytest.mark.parametrize(
    "answer_fault", ["status-500", "status-429", "html-status-502", "cut-off-after-1", "slow-headers-1500"]
)
async def test_a_failed_or_slow_title_keeps_the_first_words_and_is_not_asked_again(
    alice, alice_conversation, model_titles, settings, answer_fault
):
    settings.CHAT_TITLE_TIMEOUT = 0.5
    await Conversation.objects.filter(pk=alice_conversation.pk).aupdate(title="Why is the sky blue?")
    model_name = model(answer_fault=answer_fault)
    communicator = await first_reply(alice, alice_conversation, "Why is the sky blue?", model_name)
    reply = await Message.objects.filter(conversation=alice_conversation, role="assistant").alatest("id")
    assert reply.status == Message.Status.COMPLETE  # the reply never saw the title's fault
    await titles.wait_all()
    assert await stored(alice_conversation) == ("Why is the sky blue?", Conversation.TitleSource.REQUESTED)
    before = model_titles.stats.chat_requests
    await send(communicator, "And at sunset?", model_name)
    await frames_until_final(communicator)
    await streaming.wait_all()
    await titles.wait_all()
    assert model_titles.stats.chat_requests == before + 1  # the reply only
    await communicator.disconnect()


async def test_an_empty_title_keeps_the_first_words(alice, alice_conversation, model_titles):
    await Conversation.objects.filter(pk=alice_conversation.pk).aupdate(title="Empty answer")
    communicator = await first_reply(alice, alice_conversation, "Empty answer", model(answer=' "" '))
    await titles.wait_all()
    assert await stored(alice_conversation) == ("Empty answer", Conversation.TitleSource.REQUESTED)
    await communicator.disconnect()


async def test_the_reply_ends_before_its_title_request_answers(alice, alice_conversation, model_titles):
    communicator, _ = await join(alice, alice_conversation)
    before = model_titles.stats.chat_requests
    await send(communicator, "Quick question", model(answer_fault="slow-first-3000"))
    frames = await frames_until_final(communicator)
    await streaming.wait_all()
    await title_asked(model_titles, before + 2)
    reply = await Message.objects.filter(conversation=alice_conversation, role="assistant").alatest("id")
    assert reply.status == Message.Status.COMPLETE
    assert not any('id="conversation-title"' in f for f in frames)
    assert titles._pending  # the title is still on its way
    assert (await stored(alice_conversation))[1] == Conversation.TitleSource.REQUESTED
    await titles.wait_all()
    assert (await stored(alice_conversation))[1] == Conversation.TitleSource.MODEL
    await communicator.disconnect()


async def test_shutdown_gives_up_a_title_under_way(alice, alice_conversation, model_titles):
    await Conversation.objects.filter(pk=alice_conversation.pk).aupdate(title="Shutting down")
    before = model_titles.stats.chat_requests
    communicator = await first_reply(
        alice, alice_conversation, "Shutting down", model(answer_fault="slow-first-3000")
    )
    await title_asked(model_titles, before + 2)
    assert titles._pending
    await titles.cancel_all()
    assert not titles._pending
    assert await stored(alice_conversation) == ("Shutting down", Conversation.TitleSource.REQUESTED)
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
    for source in (Conversation.TitleSource.IMPORTED, Conversation.TitleSource.USER):
        await Conversation.objects.filter(pk=alice_conversation.pk).aupdate(title_source=source)
        before = model_titles.stats.chat_requests
        await send(communicator, "Now it works", "demo?tokens=3")
        await frames_until_final(communicator)
        await streaming.wait_all()
        await titles.wait_all()
        assert model_titles.stats.chat_requests == before + 1
        assert (await stored(alice_conversation))[1] == source
    await communicator.disconnect()


async def test_titles_can_be_switched_off(alice, alice_conversation, model_titles, settings):
    settings.CHAT_MODEL_TITLES = False
    before = model_titles.stats.chat_requests
    communicator = await first_reply(alice, alice_conversation, "No title", model())
    await asyncio.sleep(0)
    assert not titles._pending
    assert model_titles.stats.chat_requests == before + 1
    assert (await stored(alice_conversation))[1] == Conversation.TitleSource.QUESTION
    await communicator.disconnect()


# --- The non-streaming call itself -------------------------------------------------------------


def title_request(model_name: str) -> ChatRequest:
    return ChatRequest(model=model_name, messages=[{"role": "user", "content": "Name this"}], max_tokens=30)


async def test_a_whole_answer_is_read_from_the_same_endpoint(upstream):
    from chat import providers

    endpoint = await asyncio.to_thread(providers.endpoint_for, None)
    assert await complete_chat(endpoint, title_request(model(answer="A chosen title")), seconds=5) == (
        "A chosen title"
    )
    assert upstream.stats.last_chat_body["stream"] is False
    assert "stream_options" not in upstream.stats.last_chat_body


@pytest.mark.parametrize(
    ("answer_fault", "seconds", "words"),
    [
        ("status-401", 10, "API key"),
        ("status-500", 10, "500"),
        ("not-sse", 10, "without a message"),
        ("slow-first-3000", 0.5, "did not answer within 0.5 seconds"),
    ],
)
async def test_a_failed_whole_answer_is_reported(upstream, answer_fault, seconds, words):
    from chat import providers

    endpoint = await asyncio.to_thread(providers.endpoint_for, None)
    with pytest.raises(UpstreamError) as failure:
        await complete_chat(endpoint, title_request(model(answer_fault=answer_fault)), seconds=seconds)
    assert words in failure.value.reason
