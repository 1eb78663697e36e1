"""Frames to the pages watching a conversation, in this process and in the others.

Each worker process has one ``Hub``. Pages (socket consumers) subscribe to it, and a frame
published in this process goes straight to this process's subscribers: no channel-layer round
trip, no per-socket channel. When the channel layer spans processes (Redis), the hub also joins
each watched conversation's group with one channel for the whole process, relays frames that
other processes publish, and carries commands between workers (stop a reply, send a snapshot of
it). With the in-memory layer there is only this process, so the layer is not used at all.

If the shared layer fails (Redis restarting), publishing keeps going locally; once the layer
answers again the hub rejoins its groups and asks its pages to reconnect, so they catch up from
a fresh snapshot instead of showing a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

Event = dict[str, Any]
CommandHandler = Callable[[Event], Awaitable[Event | None]]

_handlers: dict[str, CommandHandler] = {}
_periodic: list[tuple[Callable[[], float], Callable[[], Awaitable[object]]]] = []
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()
_starting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


class Subscriber(Protocol):
    async def deliver(self, event: Event) -> None:
        """Take one published event (must not raise)."""

    async def reconnect(self) -> None:
        """Drop the connection so the page reconnects and takes a fresh snapshot."""


def command(name: str) -> Callable[[CommandHandler], CommandHandler]:
    """Register the handler of a worker-to-worker command (``stop``, ``snapshot``)."""

    def register(handler: CommandHandler) -> CommandHandler:
        _handlers[name] = handler
        return handler

    return register


def periodic(interval: Callable[[], float]) -> Callable[[Callable[[], Awaitable[object]]], Any]:
    """Run a job in every worker: once when its hub starts, then every ``interval()`` seconds (0: never)."""

    def register(job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
        _periodic.append((interval, job))
        return job

    return register


async def _repeat(interval: float, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        try:
            await job()
        except Exception:
            logger.exception("Background job %s failed", getattr(job, "__name__", job))
        await asyncio.sleep(interval)


def group_name(conversation_id: Any) -> str:
    return f"conv.{getattr(conversation_id, 'hex', conversation_id)}"


class Hub:
    def __init__(self) -> None:
        layer = get_channel_layer()
        self.layer = layer
        self.shared = layer is not None and not isinstance(layer, InMemoryChannelLayer)
        self.name = f"local.{uuid.uuid4().hex}"
        self._local: dict[str, set[Subscriber]] = {}
        self._waiters: dict[str, asyncio.Future[Event | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._healthy = True

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.shared:
            self.name = await self.layer.new_channel("worker.")
            self._tasks.append(self._background(loop, self._receive_loop(), "hub-receive"))
        for interval, job in _periodic:
            if (seconds := interval()) > 0:
                self._tasks.append(self._background(loop, _repeat(seconds, job), f"hub-{job.__name__}"))

    @staticmethod
    def _background(loop: asyncio.AbstractEventLoop, job: Awaitable[None], name: str) -> asyncio.Task[None]:
        # A fresh context: the hub may start inside a request, whose context (asgiref's
        # executors) is gone once it has been answered.
        return loop.create_task(job, name=name, context=contextvars.Context())  # type: ignore[arg-type]

    # --- pages in this process ---------------------------------------------------

    async def subscribe(self, conversation_id: str, subscriber: Subscriber) -> None:
        subscribers = self._local.setdefault(conversation_id, set())
        first = not subscribers
        subscribers.add(subscriber)
        if first and self.shared:
            try:
                await self.layer.group_add(group_name(conversation_id), self.name)
            except Exception:
                self._trouble("join a conversation group")

    async def unsubscribe(self, conversation_id: str, subscriber: Subscriber) -> None:
        subscribers = self._local.get(conversation_id)
        if not subscribers:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._local[conversation_id]
            if self.shared:
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(group_name(conversation_id), self.name)

    def subscriber_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._local.values())

    # --- publishing -----------------------------------------------------------------

    async def publish(self, conversation_id: str, event: Event) -> None:
        """Deliver ``event`` to every page watching the conversation, here and in other workers."""
        await self._deliver_locally(conversation_id, event)
        if self.shared:
            try:
                await self.layer.group_send(
                    group_name(conversation_id),
                    {"type": "frame", "conversation": conversation_id, "origin": self.name, "event": event},
                )
            except Exception:
                self._trouble("publish a frame")

    async def _deliver_locally(self, conversation_id: str, event: Event) -> None:
        for subscriber in tuple(self._local.get(conversation_id, ())):
            await subscriber.deliver(event)

    # --- commands between workers --------------------------------------------------

    async def send_command(self, worker: str, name: str, **fields: Any) -> None:
        """Fire a command at ``worker`` (this process's own commands run directly)."""
        if worker == self.name or not self.shared:
            await _run_handler(name, fields)
            return
        try:
            await self.layer.send(worker, {"type": "command", "command": name, **fields})
        except Exception:
            self._trouble("send a command")

    async def ask(self, worker: str, name: str, *, wait: float = 2.0, **fields: Any) -> Event | None:
        """Run a command on ``worker`` and return its answer, or None if none came in time."""
        if worker == self.name or not self.shared:
            return await _run_handler(name, fields)
        token = uuid.uuid4().hex
        future: asyncio.Future[Event | None] = asyncio.get_running_loop().create_future()
        self._waiters[token] = future
        try:
            await self.layer.send(
                worker, {"type": "command", "command": name, "reply_to": self.name, "token": token, **fields}
            )
            async with asyncio.timeout(wait):
                return await future
        except TimeoutError:
            return None
        except Exception:
            self._trouble("ask another worker")
            return None
        finally:
            self._waiters.pop(token, None)

    # --- the process's inbox -----------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            if not self._healthy:
                await self._recover()
            try:
                message = await self.layer.receive(self.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._trouble("receive")
                await asyncio.sleep(0.5)
                continue
            try:
                await self._dispatch(message)
            except Exception:
                logger.exception("Could not handle a message from another worker")

    async def _dispatch(self, message: Event) -> None:
        kind = message.get("type")
        if kind == "frame":
            if message.get("origin") != self.name:
                await self._deliver_locally(message["conversation"], message["event"])
        elif kind == "command":
            answer = await _run_handler(message["command"], message)
            if message.get("reply_to"):
                await self.layer.send(
                    message["reply_to"], {"type": "answer", "token": message["token"], "answer": answer}
                )
        elif kind == "answer":
            future = self._waiters.get(message["token"])
            if future is not None and not future.done():
                future.set_result(message.get("answer"))

    def _trouble(self, doing: str) -> None:
        if self._healthy:
            logger.warning("The channel layer failed to %s; replies go on and pages will resync", doing)
        self._healthy = False

    async def _recover(self) -> None:
        """Wait for the layer to answer, rejoin every group, and have local pages resync."""
        delay = 0.2
        while True:
            try:
                for conversation_id in tuple(self._local):
                    await self.layer.group_add(group_name(conversation_id), self.name)
                break
            except Exception:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._healthy = True
        logger.warning("The channel layer is back; asking %d pages to resync", self.subscriber_count())
        for subscribers in tuple(self._local.values()):
            for subscriber in tuple(subscribers):
                try:
                    await subscriber.reconnect()
                except Exception:
                    logger.exception("Could not ask a page to resync")


async def _run_handler(name: str, fields: Event) -> Event | None:
    handler = _handlers.get(name)
    if handler is None:
        logger.warning("Unknown worker command %r", name)
        return None
    return await handler(fields)


def start_when_serving() -> None:
    """Start this process's hub (and with it the start-up sweep) as soon as its loop runs.

    Called by the ASGI entry point under Daphne, which has no start-up event of its own.
    """
    from twisted.internet import reactor

    def start() -> None:
        asyncio.get_running_loop().create_task(get_hub(), context=contextvars.Context())

    reactor.callWhenRunning(start)


async def get_hub() -> Hub:
    """This process's hub (one per event loop), started on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is not None:
        return hub
    lock = _starting.setdefault(loop, asyncio.Lock())
    async with lock:
        hub = _hubs.get(loop)
        if hub is None:
            hub = Hub()
            await hub.start()
            _hubs[loop] = hub
    return hub
