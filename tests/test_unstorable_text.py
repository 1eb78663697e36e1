"""Replies whose stream carries what a database refuses (NUL, lone surrogates) are never lost.

Through the socket and the simulator on loopback: what the page was shown is what is stored, and
the endings that cannot be written as they are fall back to storable text, then to an error that
keeps the text so far.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.utils.html import escape
from hypothesis import example, given
from hypothesis import strategies as st

from chat import services, streaming
from chat.models import Message, Provider
from chat.simulator import NUL_TEXT, SPLIT_SURROGATE_PIECES, SURROGATE_TEXT, reply_text
from chat.storable import REPLACEMENT, storable
from tests.dom import canonical, page_after, rendered
from tests.fuzzing import any_text, broken_things, fuzz, json_values
from tests.test_consumers import frames_until_final, join, latest_reply, send

pytestmark = pytest.mark.django_db(transaction=True)


def shown(frames: list[str], reply_id: int, part: str = "body") -> str:
    """The reply's answer (or reasoning) as a page that was sent ``frames`` shows it."""
    return page_after(frames).html_of(f"m-{reply_id}-{part}")


def demo_reply(question: str, tokens: int) -> str:
    return reply_text([{"role": "user", "content": question}], tokens)


@pytest.mark.parametrize(
    ("fault", "extra"),
    [
        ("nul-3", storable(NUL_TEXT)),
        ("surrogate-3", f"cut:{REPLACEMENT}."),
        ("split-surrogate-3", "emoji:😀."),
    ],
)
async def test_a_reply_carrying_what_databases_refuse_completes_with_its_text(
    alice, alice_conversation, upstream, fault, extra
):
    communicator, snapshot = await join(alice, alice_conversation)
    await send(communicator, "Say it", f"demo?tokens=6&fault={fault}")
    frames = snapshot + await frames_until_final(communicator)
    await streaming.wait_all()

    reply = await latest_reply(alice_conversation)
    tokens = demo_reply("Say it", 6)
    words = re.findall(r"\s*\S+", tokens)
    expected = "".join(words[:3]) + extra + "".join(words[3:])
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == expected
    assert shown(frames, reply.pk) == rendered(expected)
    await communicator.disconnect()


def test_the_simulator_faults_send_json_escapes():
    assert "\x00" in NUL_TEXT and "\ud83d" in SURROGATE_TEXT
    assert storable("".join(SPLIT_SURROGATE_PIECES)) == "emoji:😀."


async def test_an_error_message_from_the_server_is_stored_storable(alice, alice_conversation, upstream):
    provider = await Provider.objects.acreate(
        name="Escapes",
        base_url=upstream.base_url,
        model_ids="demo",
        all_models=False,
        # The in-stream error object, written with escapes: a NUL and a lone surrogate in its message.
        extra_fields={
            "simulator": {
                "chunks": json.dumps(["Hi", {"error": {"message": "bad\u0000 \udead", "code": 500}}])
            }
        },
    )
    communicator, _ = await join(alice, alice_conversation)
    await communicator.send_json_to(
        {"text": "go", "model": f"p{provider.pk}:demo", "client_id": str(uuid.uuid4())}
    )
    frames = await frames_until_final(communicator)
    await streaming.wait_all()

    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.ERROR
    assert reply.content == "Hi"
    assert reply.error.endswith(f"bad{REPLACEMENT} {REPLACEMENT}")
    assert escape(reply.error) in frames[-1]
    await communicator.disconnect()


async def test_a_finish_reason_and_usage_no_column_holds_still_end_the_reply(
    alice, alice_conversation, escapes_provider
):
    finish = {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "x" * 100}],
        "usage": {"prompt_tokens": 2**40, "completion_tokens": 3, "total_tokens": 2**40 + 3},
    }
    await Provider.objects.filter(pk=escapes_provider.pk).aupdate(
        extra_fields={"simulator": {"chunks": json.dumps(["Hi", finish])}}
    )
    _, reply = await _send_and_follow(alice, alice_conversation, f"p{escapes_provider.pk}:demo")
    assert (reply.status, reply.content, reply.finish_reason) == ("complete", "Hi", "x" * 40)
    assert (reply.prompt_tokens, reply.completion_tokens, reply.total_tokens) == (None, 3, None)


# --- Every chunk a server could send, through the simulator ----------------------------------------

content_chunks = st.one_of(
    any_text.filter(bool),  # a content delta
    st.builds(  # a reasoning delta
        lambda text: {"choices": [{"index": 0, "delta": {"reasoning_content": text}}]}, any_text
    ),
    st.builds(  # a finish reason and usage that are not what a column holds
        lambda reason, usage: {
            "choices": [{"index": 0, "delta": {}, "finish_reason": reason}],
            "usage": usage,
        },
        any_text,
        json_values,
    ),
    st.builds(lambda delta: {"choices": [{"index": 0, "delta": delta}]}, json_values),
)


@pytest.fixture
def escapes_provider(upstream) -> Provider:
    return Provider.objects.create(
        name="Chunks", base_url=upstream.base_url, model_ids="demo", all_models=False
    )


@fuzz()
@given(chunks=st.lists(content_chunks, min_size=1, max_size=8))
@example(
    chunks=["a\x00", "\ud83d", "\ude00", "\udead", {"choices": [{"delta": {"reasoning": "\x00\udbff"}}]}]
)
def test_whatever_the_chunks_carry_the_reply_is_stored_as_it_was_shown(
    alice, alice_conversation, escapes_provider, runner, chunks
):
    Provider.objects.filter(pk=escapes_provider.pk).update(
        extra_fields={"simulator": {"chunks": json.dumps(chunks)}}
    )
    with broken_things() as broken:
        frames, reply = runner.run(
            _send_and_follow(alice, alice_conversation, f"p{escapes_provider.pk}:demo")
        )
    assert not broken.records, broken.describe()

    assert reply.status == Message.Status.COMPLETE, reply.error
    assert reply.content == storable("".join(chunk for chunk in chunks if isinstance(chunk, str)))
    assert reply.reasoning == storable("".join(_reasoning(chunk) for chunk in chunks))
    assert shown(frames, reply.pk) == rendered(reply.content) == canonical(reply.content_html)
    assert (
        shown(frames, reply.pk, "reasoning") == rendered(reply.reasoning) == canonical(reply.reasoning_html)
    )


def _reasoning(chunk: object) -> str:
    if not isinstance(chunk, dict):
        return ""
    delta = chunk["choices"][0].get("delta")
    text = delta.get("reasoning_content") or delta.get("reasoning") if isinstance(delta, dict) else None
    return text if isinstance(text, str) else ""


async def _send_and_follow(user, conversation, model: str) -> tuple[list[str], Message]:
    communicator, snapshot = await join(user, conversation)
    try:
        await communicator.send_json_to({"text": "go", "model": model, "client_id": str(uuid.uuid4())})
        frames = snapshot + await frames_until_final(communicator)
        await streaming.wait_all()
        return frames, await latest_reply(conversation)
    finally:
        await communicator.disconnect()


# --- Endings a database refuses ---------------------------------------------------------------------


@pytest.fixture
def refuse():
    """Make the database itself refuse some updates of replies (a trigger), for the rest of the test."""
    triggers = []

    def create(name: str, condition: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON chat_message WHEN {condition} "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        triggers.append(name)

    yield create
    with connection.cursor() as cursor:
        for name in triggers:
            cursor.execute(f"DROP TRIGGER {name}")


async def test_an_ending_whose_text_cannot_be_encoded_is_stored_storable(posted_turn):
    reply = posted_turn.reply
    ending = services.ReplyEnding(status=Message.Status.COMPLETE, text="cut \ud83d", reasoning="x\udead")
    with broken_things() as broken:
        assert await streaming.record_ending(reply.pk, ending)
    await reply.arefresh_from_db()
    assert (reply.status, reply.content, reply.reasoning) == (
        "complete",
        f"cut {REPLACEMENT}",
        f"x{REPLACEMENT}",
    )
    assert "could not record its ending as complete" in broken.describe()  # the first attempt, logged


async def test_an_ending_the_database_refuses_ends_error_keeping_the_text(
    alice, alice_conversation, upstream, refuse
):
    await database_sync_to_async(refuse)("refuse_complete", "NEW.status = 'complete'")
    communicator, snapshot = await join(alice, alice_conversation)
    await send(communicator, "Keep this", "demo?tokens=8")
    frames = snapshot + await frames_until_final(communicator, wait=15)
    await streaming.wait_all()

    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.ERROR
    assert reply.error == services.SAVE_FAILED
    assert reply.content == demo_reply("Keep this", 8)
    assert shown(frames, reply.pk) == rendered(reply.content) == canonical(reply.content_html)
    await communicator.disconnect()


async def test_failed_checkpoints_lose_nothing_the_ending_writes_it_all(
    alice, alice_conversation, upstream, refuse
):
    condition = "NEW.status = 'streaming' AND NEW.content != OLD.content"
    await database_sync_to_async(refuse)("refuse_checkpoints", condition)
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "Slowly", "demo?tokens=12&tps=40")  # 0.3 s: checkpoints every 0.2 s
    await frames_until_final(communicator, wait=15)
    await streaming.wait_all()

    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == demo_reply("Slowly", 12)
    await communicator.disconnect()
