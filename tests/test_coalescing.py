"""The coalescing window widens with the worker's load; a reply's first text and ending never wait."""

from __future__ import annotations

import time

import pytest

from chat import streaming
from chat.models import Message
from chat.simulator.replies import reply_text
from chat.upstream import network
from tests.test_consumers import FINAL, join, latest_reply, send


@pytest.fixture
def windows(settings):
    settings.CHAT_COALESCE_MS = 30
    settings.CHAT_COALESCE_MAX_MS = 120


def test_a_quiet_worker_uses_the_short_window(windows):
    assert streaming.coalescing_window(0) == streaming.coalescing_window(streaming.QUIET_REPLIES) == 0.030


def test_a_busy_worker_uses_the_long_window_and_never_more(windows):
    assert streaming.coalescing_window(streaming.BUSY_REPLIES) == pytest.approx(0.120)
    assert streaming.coalescing_window(10_000) == pytest.approx(0.120)


def test_the_window_widens_steadily_in_between(windows):
    widths = [streaming.coalescing_window(live) for live in range(0, 200)]
    assert widths == sorted(widths)
    assert all(0.030 <= width <= 0.120 for width in widths)
    middle = (streaming.QUIET_REPLIES + streaming.BUSY_REPLIES) // 2
    assert streaming.coalescing_window(middle) == pytest.approx(0.075)


class Busy:
    """Stands in for a reply of another conversation, so the worker counts as writing many."""

    task = None


@pytest.mark.django_db(transaction=True)
async def test_on_a_busy_worker_the_first_text_and_the_ending_go_out_at_once(
    alice, alice_conversation, upstream, settings, monkeypatch
):
    settings.CHAT_COALESCE_MS = 5
    settings.CHAT_COALESCE_MAX_MS = 3000  # so long that any wait for it would show
    for key in range(-streaming.BUSY_REPLIES, 0):
        monkeypatch.setitem(streaming._running, key, Busy())
    communicator, _ = await join(alice, alice_conversation)
    sent = time.monotonic()
    await send(communicator, "busy worker", "demo?tokens=20&tps=40")  # half a second of tokens
    first_text = ending = None
    deltas = 0
    while ending is None:
        frame = await communicator.receive_from(timeout=10)
        if frame.startswith("<span") and "hx-swap-oob=beforeend>" in frame:  # text for the open tail
            deltas += 1
            first_text = first_text or time.monotonic() - sent
        if FINAL.search(frame):
            ending = time.monotonic() - sent
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.COMPLETE
    assert first_text is not None and first_text < 1.0, f"first text after {first_text:.2f} s"
    assert ending < 2.0, f"the ending came {ending:.2f} s after the send"
    # The window did apply: the 19 tokens after the first came in very few frames.
    assert deltas <= 3, f"{deltas} text frames"
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_chunks_that_come_within_the_window_wake_the_reply_once(
    alice, alice_conversation, upstream, settings, monkeypatch
):
    """The reply holds its upstream reads through the window: its chunks are read in one go."""
    settings.CHAT_COALESCE_MS = 3000
    settings.CHAT_COALESCE_MAX_MS = 3000
    wakes = 0
    wake = network._Receiver._wake

    def counted(receiver):
        nonlocal wakes
        wakes += receiver.waiter is not None and not receiver.waiter.done()
        wake(receiver)

    monkeypatch.setattr(network._Receiver, "_wake", counted)
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, "held reads", "demo?tokens=20&tps=40")
    while not FINAL.search(await communicator.receive_from(timeout=10)):
        pass
    await streaming.wait_all()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == reply_text([{"role": "user", "content": "held reads"}], 20)
    # The response's head, the first text, then [DONE]; one wake per chunk would be over 20.
    assert wakes <= 5, f"the reading task was woken {wakes} times"
    await communicator.disconnect()
