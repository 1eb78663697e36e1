"""Generations: the server-side life of an assistant reply.

A ``Generation`` is owned by the worker process, not by a socket: it reads the
upstream, publishes coalesced deltas through the process's hub, checkpoints the
text (renewing the reply's lease), and records the ending whatever happens.
Pages only subscribe. Stop and snapshot requests reach it from any worker as
hub commands, keyed by the ``worker`` recorded on the reply's row.

Deltas carry the reply id and a sequence number; a page that joins mid-reply
takes a snapshot (the text published so far and its sequence number) and then
applies only later deltas (``chat.subscription``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import signal
import time
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection

from chat import context, fanout, log_context, providers, rendering, selectors, services, titles
from chat.incremental import IncrementalMarkdown
from chat.models import Message
from chat.storable import storable
from chat.upstream import (
    ChatRequest,
    Endpoint,
    Finish,
    ReasoningDelta,
    Retrying,
    Skipped,
    TextDelta,
    UpstreamError,
    Usage,
    UsageOptionRejected,
    close_clients,
    network,
    stream_chat,
)

logger = logging.getLogger(__name__)


def in_worker_thread(func: Any) -> Any:
    """Run a database call of a reply on the thread pool, not the one thread that pages share.

    Checkpoints and endings of many replies must not queue behind each other or behind page
    requests (a checkpoint stuck in that queue would let the reply's lease lapse).
    """
    return database_sync_to_async(func, thread_sensitive=False)


def _nothing() -> None:
    return None


async def release_connection() -> None:
    """Give the caller's database connection back (to the pool) before waiting on ``in_worker_thread``.

    With ``DATABASE_POOL`` connections are not kept, but a request's thread keeps the one it used
    (for its session and user, say) until the response is sent. A request that held it while it
    waited for a database trip on another thread would deadlock once every connection of the pool
    were held that way: a burst of new chats as large as the pool. ``database_sync_to_async``
    closes the connection of the thread it runs on after the call, and that thread is the caller's.
    Without a pool (connections kept for ``CONN_MAX_AGE``) there is nothing to give back.
    """
    if connection.settings_dict.get("CONN_MAX_AGE") == 0:
        await database_sync_to_async(_nothing)()


# The live replies of a worker between which the coalescing window widens (``coalescing_window``).
QUIET_REPLIES = 10
BUSY_REPLIES = 100


def coalescing_window(live: int) -> float:
    """Seconds a reply's text waits after a frame, for a worker writing ``live`` replies.

    ``CHAT_COALESCE_MS`` up to ``QUIET_REPLIES``, then linearly wider, to ``CHAT_COALESCE_MAX_MS``
    from ``BUSY_REPLIES`` on. Each frame costs the worker about the same whatever it carries, so
    a busy worker sends fewer, fuller ones: at 20 tokens a second a reply's tokens come 50 ms
    apart, one per frame under a 30 ms window, two or three under 120 ms. Still well under what a
    reader notices, and a frame's newest token waits less than the window.
    """
    low, high = settings.CHAT_COALESCE_MS / 1000, settings.CHAT_COALESCE_MAX_MS / 1000
    if live <= QUIET_REPLIES:
        return low
    if live >= BUSY_REPLIES:
        return high
    return low + (high - low) * (live - QUIET_REPLIES) / (BUSY_REPLIES - QUIET_REPLIES)


UNEXPECTED_ERROR = "Something went wrong while writing the reply; the text so far is kept."
# Seconds before each attempt to record an ending (``services.ending_attempts``).
ENDING_PAUSES = (0.0, 0.1, 0.5, 2.0)


class Generation:
    """One assistant reply being written."""

    def __init__(
        self, *, reply: Message, endpoint: Endpoint, hub: fanout.Hub, request: ChatRequest | None
    ) -> None:
        self.reply_id: int = reply.pk
        self.conversation_key = reply.conversation_id.hex
        self.endpoint = endpoint
        self.hub = hub
        self.request = request
        self.request_id = f"req_{secrets.token_hex(8)}"  # in every log line about this reply
        self.seq = 0  # deltas published so far
        self._published: list[str] = []  # the text of those deltas, in order
        self._published_length = 0
        self._pending: list[str] = []  # received, not yet published
        self._reasoning: list[str] = []  # the reasoning published so far
        self._pending_reasoning: list[str] = []
        # The answer and the reasoning as pages are shown them: finished blocks and an open tail.
        self._answer = IncrementalMarkdown()
        self._thinking = IncrementalMarkdown()
        self._published_html = False  # the HTML of every published piece went out
        self.skipped = 0  # data payloads that were not JSON
        self._note = ""  # shown under the reply while it waits (a retry), cleared by the first token
        self._note_changed = False
        self._wake = asyncio.Event()  # set when there is something to do now
        self._closing = asyncio.Event()
        # Held within the coalescing window after a frame: text waits, and so do the upstream's
        # bytes, unread, until it ends.
        self._window = network.ReadHold()
        self._saved_length = 0
        self._saved_at = time.monotonic()
        self._checkpoint_failed = False
        self._cancel_status = Message.Status.STOPPED
        self.task: asyncio.Task[None] | None = None

    @property
    def published_text(self) -> str:
        if len(self._published) > 1:
            self._published[:] = ["".join(self._published)]  # joined once, then kept joined
        return self._published[0] if self._published else ""

    @property
    def published_reasoning(self) -> str:
        if len(self._reasoning) > 1:
            self._reasoning[:] = ["".join(self._reasoning)]
        return self._reasoning[0] if self._reasoning else ""

    def snapshot(self) -> tuple[str, str, int]:
        """The text and reasoning subscribers have been sent, and the sequence number they reach."""
        return self.published_text, self.published_reasoning, self.seq

    def live_body(self) -> tuple[str, str]:
        """The answer and the reasoning as subscribers show them (at ``seq``), for a page that joins."""
        return (
            rendering.live_html(rendering.body_part(self.reply_id), self._answer),
            rendering.live_html(rendering.reasoning_part(self.reply_id), self._thinking),
        )

    def stop(self, status: str = Message.Status.STOPPED) -> None:
        """End the reply now, keeping its text: the upstream request is closed, not read to the end."""
        if self.task is not None and not self.task.done():
            self._cancel_status = status
            self.task.cancel()

    async def run(self) -> None:
        log_context.bind(request=self.request_id, message=self.reply_id)  # for this task's lines
        started = time.monotonic()
        first_token: float | None = None
        finish_reason = ""
        usage: Usage | None = None
        status, error = Message.Status.COMPLETE, ""
        publisher = asyncio.create_task(self._publish_loop(), name=f"publish-{self.reply_id}")
        upkeep = _upkeep()
        upkeep.join(self)
        try:
            network.hold_reads(self._window)
            request = self.request
            if request is None:
                request = self.request = await in_worker_thread(_request)(self.reply_id)
            events = stream_chat(self.endpoint, request, request_id=self.request_id)
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, TextDelta | ReasoningDelta):
                        if first_token is None:
                            first_token = time.monotonic()
                            if self._note:
                                self._show_note("")
                        pending = self._pending if isinstance(event, TextDelta) else self._pending_reasoning
                        pending.append(event.text)
                        if not self._window.held:
                            self._wake.set()
                    elif isinstance(event, Finish):
                        finish_reason = event.reason
                    elif isinstance(event, Usage):
                        usage = event
                    elif isinstance(event, Skipped):
                        self.skipped += 1
                        logger.warning(
                            "Reply %s (%s): skipped a data payload that is not JSON: %.200r",
                            self.reply_id,
                            self.request_id,
                            event.payload,
                        )
                    elif isinstance(event, Retrying):
                        wait = f"in {round(event.wait)} s" if event.wait >= 1 else "now"
                        self._show_note(f"{event.reason} Trying again {wait}…")
                    elif isinstance(event, UsageOptionRejected):
                        await in_worker_thread(providers.remember_no_stream_usage)(self.endpoint)
        except UpstreamError as exc:
            status, error = Message.Status.ERROR, exc.reason
            logger.warning(
                "Reply %s (%s) ended with an error: %s", self.reply_id, self.request_id, exc.reason
            )
        except asyncio.CancelledError:
            status = self._cancel_status
        except Exception:
            logger.exception("Reply %s (%s) failed", self.reply_id, self.request_id)
            status, error = Message.Status.ERROR, UNEXPECTED_ERROR
        finally:
            network.hold_reads(None)  # what this task starts next (the title's request) is not held
            upkeep.leave(self)  # the ending saves the text itself
            self._closing.set()
            self._wake.set()
            try:
                await asyncio.shield(publisher)
            except Exception:
                logger.exception("Reply %s (%s): publishing failed", self.reply_id, self.request_id)
                status, error = Message.Status.ERROR, UNEXPECTED_ERROR
                self._published_html = False  # the ending renders the whole text instead
            # Text that was read but not yet published is part of the reply all the same.
            self._published.extend(self._pending)
            self._reasoning.extend(self._pending_reasoning)
            self._pending.clear()
            self._pending_reasoning.clear()
            await asyncio.shield(upkeep.settled(self))  # no checkpoint of this reply still on its way
            ending = services.ReplyEnding(
                status=status,
                text=self.published_text,
                reasoning=self.published_reasoning,
                finish_reason=finish_reason,
                error=error,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                total_tokens=usage.total_tokens if usage else None,
                first_token_ms=round((first_token - started) * 1000) if first_token else None,
                duration_ms=round((time.monotonic() - started) * 1000),
                skipped_chunks=self.skipped,
                request_id=self.request_id,
                prompt_estimate=_prompt_estimate(self.request) if usage is None else None,
                html=self._answer.html() if self._published_html else None,
                reasoning_html=self._thinking.html() if self._published_html else None,
            )
            await asyncio.shield(self._finish(ending))

    async def _publish_loop(self) -> None:
        """Publish the first delta at once, then at most one frame per coalescing window.

        The row is kept current by the worker's upkeep (``_Upkeep``), for every reply at once.
        """
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending or self._pending_reasoning or self._note_changed:
                text = "".join(self._pending)
                reasoning = "".join(self._pending_reasoning)
                self._pending.clear()
                self._pending_reasoning.clear()
                if text:
                    self._published.append(text)
                if reasoning:
                    self._reasoning.append(reasoning)
                self._published_length += len(text) + len(reasoning)
                self.seq += 1
                frames = []
                if reasoning:
                    update = self._thinking.feed(reasoning)
                    frames += rendering.update_frames(rendering.reasoning_part(self.reply_id), update)
                if self._note_changed:
                    self._note_changed = False
                    frames.append(rendering.note_frame(self.reply_id, self._note))
                if text:
                    frames += rendering.update_frames(
                        rendering.body_part(self.reply_id), self._answer.feed(text)
                    )
                await self._publish_delta(frames)
                if not self._closing.is_set():
                    self._window.held = True
                    loop.call_later(coalescing_window(len(_running)), self._release)
            if self._closing.is_set() and not self._pending and not self._pending_reasoning:
                # (text that came in while the last frame went out got its own frame)
                await self._publish_last_blocks()
                return

    async def _publish_last_blocks(self) -> None:
        """The text is complete: its open tails become their rendering, in one last delta."""
        frames = rendering.update_frames(rendering.reasoning_part(self.reply_id), self._thinking.end())
        frames += rendering.update_frames(rendering.body_part(self.reply_id), self._answer.end())
        self.seq += 1
        await self._publish_delta(frames)
        self._published_html = True

    async def _publish_delta(self, frames: list[str]) -> None:
        """Send subscribers the frames of delta number ``seq``."""
        await self.hub.publish(
            self.conversation_key,
            {"kind": "delta", "message_id": self.reply_id, "seq": self.seq, "frames": frames},
        )

    @property
    def note(self) -> str:
        """What the page shows under the reply while it waits (empty: nothing)."""
        return self._note

    def _show_note(self, note: str) -> None:
        self._note, self._note_changed = note, True
        self._wake.set()

    def _release(self) -> None:
        """The coalescing window is over: text that arrived meanwhile goes out as one frame."""
        self._window.release()
        if self._pending or self._pending_reasoning:
            self._wake.set()

    def checkpoint_due(self, now: float) -> services.Checkpoint | None:
        """What the upkeep should write for this reply now, if anything: grown text, or the lease.

        The text at most every checkpoint interval, and the lease at least every third of its
        length even when no text comes. Taking it counts as saved (``checkpoint_failed`` undoes it).
        """
        since_saved = now - self._saved_at
        grown = self._published_length != self._saved_length
        if not (
            since_saved >= settings.CHAT_LEASE_SECONDS / 3
            or (grown and since_saved >= settings.CHAT_CHECKPOINT_SECONDS)
        ):
            return None
        text = self.published_text if grown else None
        reasoning = self.published_reasoning if grown and self._reasoning else None
        if self._checkpoint_failed:  # the last one failed: this one writes text any database stores
            text = storable(text) if text is not None else None
            reasoning = storable(reasoning) if reasoning is not None else None
        self._saved_length = self._published_length
        self._saved_at = now
        return services.Checkpoint(self.reply_id, text, reasoning)

    def checkpoint_saved(self, *, ok: bool) -> None:
        if ok:
            self._checkpoint_failed = False
            return
        self._checkpoint_failed = True
        self._saved_length = -1  # so the next interval writes the text again

    async def _finish(self, ending: services.ReplyEnding) -> None:
        await record_ending(self.reply_id, ending, request_id=self.request_id)


def _prompt_estimate(request: ChatRequest | None) -> int | None:
    """The request's tokens by estimate, for usage when the server reports none."""
    if request is None:
        return None
    return context.REPLY_PRIMING + sum(context.message_tokens(message) for message in request.messages)


def _request(reply_id: int) -> ChatRequest:
    reply = Message.objects.select_related("conversation").get(pk=reply_id)
    _, context_length = providers.reply_target(reply.provider_id, reply.model)
    return selectors.reply_request(reply=reply, context_length=context_length).request


async def record_ending(reply_id: int, ending: services.ReplyEnding, *, request_id: str = "") -> bool:
    """Record how a reply ended and tell its pages; False when no attempt could be stored.

    The ending is the one write that must land: each failed attempt is logged and the next one
    (``services.ending_attempts``) asks less of the database, after a short pause in which a
    lock or a lost connection may pass: storable text, then an error that keeps the text so far.
    """
    for pause, attempt in zip(ENDING_PAUSES, services.ending_attempts(ending), strict=True):
        await asyncio.sleep(pause)
        try:
            ended = await in_worker_thread(services.reply_finish)(reply_id=reply_id, ending=attempt)
        except Exception:
            logger.exception(
                "Reply %s (%s): could not record its ending as %s", reply_id, request_id, attempt.status
            )
            continue
        if ended is not None:
            try:
                await publish_ending(ended)
            except Exception:
                logger.exception("Reply %s (%s): could not publish its ending", reply_id, request_id)
            titles.maybe_start(ended.reply)
        return True
    logger.error(
        "Reply %s (%s): no ending could be recorded; the sweep will end it from its last checkpoint",
        reply_id,
        request_id,
    )
    return False


async def publish_ending(ended: services.EndedReply) -> None:
    """Tell every page a reply ended: its footer, its status, and that nothing streams any more."""
    reply = ended.reply
    frames = [
        await in_worker_thread(rendering.ending_frame)(reply),
        rendering.state_frame(ended.version, streaming=False),
    ]
    hub = await fanout.get_hub()
    await hub.publish(
        reply.conversation_id.hex,
        {
            "kind": "ending",
            "message_id": reply.pk,
            "version": ended.version,
            "frames": frames,
            # An interrupted reply keeps its last checkpoint, which may be behind what pages
            # were shown: they redraw it from the stored text.
            "redraw": reply.status == Message.Status.INTERRUPTED,
        },
    )


# --- The process's registry of running generations ---------------------------------

_running: dict[int, Generation] = {}


class _Upkeep:
    """Keeps the rows of every reply this worker writes current: one statement per interval.

    Each interval (the checkpoint interval, or a third of the lease if that is shorter) it asks
    each reply what is due (``Generation.checkpoint_due``) and writes all of it at once
    (``services.replies_checkpoint``). If that statement fails, each reply is written on its own,
    so one reply's bad text cannot hold back the others' leases.
    """

    def __init__(self) -> None:
        self._members: dict[int, Generation] = {}
        self._task: asyncio.Task[None] | None = None
        self._writing: set[int] = set()  # replies in the statement on its way
        self._written = asyncio.Event()

    def join(self, generation: Generation) -> None:
        self._members[generation.reply_id] = generation
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="reply-upkeep", context=contextvars.Context()
            )

    def leave(self, generation: Generation) -> None:
        self._members.pop(generation.reply_id, None)

    async def settled(self, generation: Generation) -> None:
        """Return once no checkpoint of ``generation`` is being written."""
        while generation.reply_id in self._writing:
            self._written.clear()
            await self._written.wait()

    async def _run(self) -> None:
        interval = min(settings.CHAT_CHECKPOINT_SECONDS, settings.CHAT_LEASE_SECONDS / 3)
        while self._members:
            await asyncio.sleep(interval)
            now = time.monotonic()
            due = [(g, c) for g in list(self._members.values()) if (c := g.checkpoint_due(now)) is not None]
            if due:
                await self._write(due)

    async def _write(self, due: list[tuple[Generation, services.Checkpoint]]) -> None:
        self._writing = {generation.reply_id for generation, _ in due}
        try:
            try:
                await in_worker_thread(services.replies_checkpoint)([c for _, c in due])
            except Exception:
                logger.exception(
                    "Could not save the checkpoints of %d replies at once; saving each", len(due)
                )
                for generation, checkpoint in due:
                    try:
                        await in_worker_thread(services.replies_checkpoint)([checkpoint])
                    except Exception:
                        logger.exception(
                            "Reply %s (%s): could not save a checkpoint; trying again",
                            generation.reply_id,
                            generation.request_id,
                        )
                        generation.checkpoint_saved(ok=False)
                    else:
                        generation.checkpoint_saved(ok=True)
            else:
                logger.debug("Checkpoints of %d replies saved in one statement", len(due))
                for generation, _ in due:
                    generation.checkpoint_saved(ok=True)
        finally:
            self._writing = set()
            self._written.set()


_upkeeps: dict[asyncio.AbstractEventLoop, _Upkeep] = {}


def _upkeep() -> _Upkeep:
    """This event loop's upkeep (tests run several loops; a worker has one)."""
    loop = asyncio.get_running_loop()
    for other in [other for other in _upkeeps if other.is_closed()]:
        del _upkeeps[other]
    if loop not in _upkeeps:
        _upkeeps[loop] = _Upkeep()
    return _upkeeps[loop]


_shutting_down = False


def running(reply_id: int) -> Generation | None:
    return _running.get(reply_id)


def accepting() -> bool:
    """False once this worker is shutting down: new replies belong on another worker."""
    return not _shutting_down


def start(
    reply: Message, *, endpoint: Endpoint, hub: fanout.Hub, request: ChatRequest | None = None
) -> Generation:
    """Start writing ``reply`` in this process's event loop; call only after its row is committed.

    ``request`` is what goes upstream, when the caller has read it already.
    """
    existing = _running.get(reply.pk)
    if existing is not None:
        return existing
    _install_shutdown_handler()
    generation = Generation(reply=reply, endpoint=endpoint, hub=hub, request=request)
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


@fanout.command("stop")
async def _stop_command(fields: dict[str, Any]) -> None:
    generation = _running.get(int(fields["reply_id"]))
    if generation is not None:
        generation.stop()


@fanout.command("snapshot")
async def _snapshot_command(fields: dict[str, Any]) -> dict[str, Any] | None:
    generation = _running.get(int(fields["reply_id"]))
    if generation is None:
        return None
    text, reasoning, seq = generation.snapshot()
    html, reasoning_html = generation.live_body()
    return {
        "text": text,
        "reasoning": reasoning,
        "seq": seq,
        "note": generation.note,
        "html": html,
        "reasoning_html": reasoning_html,
    }


# --- Shutdown: let running replies finish, then save them as interrupted -------------

_previous_sigterm: Any = None
_handler_installed = False


def _install_shutdown_handler() -> None:
    """Chain a SIGTERM handler in front of the server's own (once, from the serving loop)."""
    global _previous_sigterm, _handler_installed
    if _handler_installed:
        return
    _handler_installed = True
    try:
        loop = asyncio.get_running_loop()
        _previous_sigterm = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            loop.call_soon_threadsafe(lambda: loop.create_task(_shut_down(signum, frame)))

        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        pass  # not the main thread (tests): the embedding program handles signals


async def _shut_down(signum: int, frame: Any) -> None:
    global _shutting_down
    if _shutting_down:
        return
    _shutting_down = True
    grace = settings.CHAT_SHUTDOWN_GRACE_SECONDS
    logger.warning("Shutting down: %d replies running, waiting up to %.0f s", len(_running), grace)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace):
            await wait_all()
    for generation in list(_running.values()):
        generation.stop(Message.Status.INTERRUPTED)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            await wait_all()
    await titles.cancel_all()  # a title still on its way is given up: the first words stay
    await close_clients()  # the pooled upstream connections, now that no reply uses them
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    else:
        signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
