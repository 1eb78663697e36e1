"""Generations: the server-side life of an assistant reply.

A ``Generation`` is owned by the worker process, not by a socket: it reads the
upstream, publishes coalesced deltas to the conversation's group, checkpoints
the text, and records the ending whatever happens. Sockets only subscribe.

Frames carry the message id and a sequence number; a subscriber that joins
mid-reply takes a snapshot (the text published so far and its sequence
number) and then drops any frame at or below it, so no text shows twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat import rendering, selectors, services
from chat.models import Message
from chat.upstream import Endpoint, Finish, TextDelta, UpstreamError, Usage, stream_chat

logger = logging.getLogger(__name__)

UNEXPECTED_ERROR = "Something went wrong while writing the reply; the text so far is kept."


def group_name(conversation_id: Any) -> str:
    """The channel-layer group of a conversation (only ever derived from an authorised conversation)."""
    return f"conv.{getattr(conversation_id, 'hex', conversation_id)}"


class Generation:
    """One assistant reply being written."""

    def __init__(self, *, reply: Message, endpoint: Endpoint) -> None:
        self.reply_id: int = reply.pk
        self.conversation_id = reply.conversation_id
        self.model = reply.model
        self.endpoint = endpoint
        self.group = group_name(reply.conversation_id)
        self.seq = 0  # frames published so far
        self._published: list[str] = []  # the text of those frames, in order
        self._pending: list[str] = []  # received, not yet published
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._checkpointed_length = 0
        self._checkpoint_task: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def published_text(self) -> str:
        return "".join(self._published)

    def snapshot(self) -> tuple[str, int]:
        """The text subscribers have been sent, and the sequence number it reaches."""
        return self.published_text, self.seq

    async def run(self) -> None:
        started = time.monotonic()
        first_token: float | None = None
        finish_reason = ""
        usage: Usage | None = None
        status, error = Message.Status.COMPLETE, ""
        publisher = asyncio.create_task(self._publish_loop(), name=f"publish-{self.reply_id}")
        try:
            reply = await database_sync_to_async(Message.objects.select_related("conversation").get)(
                pk=self.reply_id
            )
            history = await database_sync_to_async(selectors.reply_history)(reply=reply)
            async for event in stream_chat(self.endpoint, model=self.model, messages=history):
                if isinstance(event, TextDelta):
                    if first_token is None:
                        first_token = time.monotonic()
                    self._pending.append(event.text)
                    self._wake.set()
                elif isinstance(event, Finish):
                    finish_reason = event.reason
                elif isinstance(event, Usage):
                    usage = event
        except UpstreamError as exc:
            status, error = Message.Status.ERROR, exc.reason
            logger.info("Reply %s ended with an error: %s", self.reply_id, exc.reason)
        except asyncio.CancelledError:
            status = Message.Status.STOPPED
        except Exception:
            logger.exception("Reply %s failed", self.reply_id)
            status, error = Message.Status.ERROR, UNEXPECTED_ERROR
        finally:
            self._closing.set()
            self._wake.set()
            await asyncio.shield(publisher)
            if self._checkpoint_task is not None:
                await asyncio.shield(self._checkpoint_task)
            ending = services.ReplyEnding(
                status=status,
                text=self.published_text,
                finish_reason=finish_reason,
                error=error,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                total_tokens=usage.total_tokens if usage else None,
                first_token_ms=round((first_token - started) * 1000) if first_token else None,
                duration_ms=round((time.monotonic() - started) * 1000),
            )
            await asyncio.shield(self._finish(ending))

    async def _publish_loop(self) -> None:
        """Publish the first delta at once, then at most one frame per coalescing window."""
        window = settings.CHAT_COALESCE_MS / 1000
        checkpoint_every = settings.CHAT_CHECKPOINT_SECONDS
        last_checkpoint = time.monotonic()
        layer = get_channel_layer()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                self._published.append(text)
                self.seq += 1
                await self._send(
                    layer,
                    {
                        "type": "chat.frame",
                        "message_id": self.reply_id,
                        "seq": self.seq,
                        "html": rendering.delta_frame(self.reply_id, text),
                    },
                )
                now = time.monotonic()
                if now - last_checkpoint >= checkpoint_every:
                    last_checkpoint = now
                    self._checkpoint()
            if self._closing.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), window)

    def _checkpoint(self) -> None:
        if self._checkpoint_task is not None and not self._checkpoint_task.done():
            return  # one in flight is enough; the next frame will try again
        text = self.published_text
        if len(text) == self._checkpointed_length:
            return
        self._checkpointed_length = len(text)
        self._checkpoint_task = asyncio.create_task(
            database_sync_to_async(services.reply_checkpoint)(reply_id=self.reply_id, text=text)
        )

    async def _finish(self, ending: services.ReplyEnding) -> None:
        try:
            reply = await database_sync_to_async(services.reply_finish)(reply_id=self.reply_id, ending=ending)
            if reply is not None:
                self.seq += 1
                await self._send(
                    get_channel_layer(),
                    {
                        "type": "chat.frame",
                        "message_id": self.reply_id,
                        "seq": self.seq,
                        "html": await database_sync_to_async(rendering.message_frame)(reply),
                    },
                )
        except Exception:
            logger.exception("Could not record the ending of reply %s", self.reply_id)

    async def _send(self, layer: Any, message: dict[str, Any]) -> None:
        try:
            await layer.group_send(self.group, message)
        except Exception:
            # The reply goes on and is stored; pages catch up from the snapshot.
            logger.warning("Could not publish a frame of reply %s", self.reply_id, exc_info=True)


# --- The process's registry of running generations ---------------------------------

_running: dict[int, Generation] = {}


def running(reply_id: int) -> Generation | None:
    return _running.get(reply_id)


def start(reply: Message, *, endpoint: Endpoint) -> Generation:
    """Start writing ``reply`` in this process's event loop; call only after its row is committed."""
    existing = _running.get(reply.pk)
    if existing is not None:
        return existing
    generation = Generation(reply=reply, endpoint=endpoint)
    _running[reply.pk] = generation
    # A fresh context: the reply outlives the request or socket that asked for it, so it must
    # not inherit that caller's context (asgiref's executors, request-scoped state).
    generation.task = asyncio.get_running_loop().create_task(
        generation.run(), name=f"reply-{reply.pk}", context=contextvars.Context()
    )
    generation.task.add_done_callback(lambda _task: _running.pop(reply.pk, None))
    return generation


async def wait_all() -> None:
    """Wait for every running generation of this process to end (tests, shutdown).

    Callers bound the wait with ``asyncio.timeout`` where they need to.
    """
    tasks = [g.task for g in _running.values() if g.task is not None]
    if tasks:
        await asyncio.wait(tasks)
