"""The conversation socket: authorise, subscribe, forward frames, take requests. Nothing else."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from chat import events, fanout, log_context, rendering, selectors, turns
from chat.models import Conversation
from chat.subscription import Gap, Subscription

logger = logging.getLogger(__name__)

# Close codes in the application range (Daphne sends no other): 4403 is final, the page does not
# retry; 4012 makes the page reconnect at once and take a fresh snapshot.
CLOSE_FORBIDDEN = 4403
CLOSE_RESYNC = 4012

# Where ``DirectSend`` puts the server's own ``send`` in a socket's scope.
DIRECT_SEND = "chat.direct_send"


class DirectSend:
    """ASGI middleware: the server's ``send`` in the scope, for the frames a page is streamed.

    Channels' session middleware wraps ``send`` so that it can save a changed session when an
    HTTP response starts. It looks at the session on every message it passes, socket frames
    too, though a socket never saves one: a tenth of the cost of sending a frame. Streamed
    frames take the server's ``send`` instead; accepting and closing keep the wrapped one.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await self.app({**scope, DIRECT_SEND: send}, receive, send)


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    # Frames arrive through the process's hub, not through a channel per socket.
    channel_layer_alias = "no channel per socket"

    async def connect(self) -> None:
        self.conversation: Conversation | None = None
        self.hub = None
        self.user_key = None
        user = self.scope.get("user")
        conversation_id = self.scope["url_route"]["kwargs"].get("conversation_id")
        if conversation_id is None:  # the new-chat page: no conversation until its first message
            if user is None or not user.is_authenticated:
                await self.close(code=CLOSE_FORBIDDEN)
                return
            await self.accept()
            await self._listen_to_account(user)
            return
        try:
            conversation = await database_sync_to_async(selectors.conversation_for_user)(
                user, conversation_id
            )
        except Http404:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        await self._listen_to_account(user)
        await self._follow(conversation, since=self._since())

    async def _listen_to_account(self, user: Any) -> None:
        """Hear the account's own events (a deactivation closes every socket of it at once)."""
        self.hub = await fanout.get_hub()
        self.user_key = events.user_key(user.pk)
        await self.hub.subscribe(self.user_key, self)

    async def _follow(self, conversation: Conversation, *, since: int | None) -> None:
        """Subscribe to the conversation, then send the page what it is missing."""
        self.conversation = conversation
        self.key = conversation.pk.hex
        self.subscription = Subscription()
        self.hub = await fanout.get_hub()
        # Subscribe first, then take the snapshot: what is published meanwhile is held, then filtered.
        await self.hub.subscribe(self.key, self)
        snap = await turns.snapshot(self.conversation, since=since)
        for frame in snap.frames:
            await self.send(text_data=frame)
        try:
            held = self.subscription.finish_sync(version=snap.version, seen=snap.seen, stale=snap.stale)
        except Gap as gap:
            logger.info("Page of conversation %s changed while connecting (%s); resyncing", self.key, gap)
            await self.reconnect()
            return
        for frame in held:
            await self.send(text_data=frame)

    def _since(self) -> int | None:
        """The version the page shows, from ``?since=``; anything else means it shows nothing yet."""
        query = self.scope.get("query_string", b"").decode("latin-1")
        values = parse_qs(query, errors="replace").get("since")
        if values and values[0].isascii() and values[0].isdigit() and len(values[0]) <= 20:
            return int(values[0])
        return None

    async def disconnect(self, code: int) -> None:
        if getattr(self, "hub", None) is not None and getattr(self, "conversation", None) is not None:
            await self.hub.unsubscribe(self.key, self)
        if getattr(self, "user_key", None) is not None:
            await self.hub.unsubscribe(self.user_key, self)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # Every frame gets an answer, binary and empty ones too (the base class raises on them).
        log_context.bind(request=log_context.new_request_id(), message="-")
        await self.receive_json(await self.decode_json(text_data) if text_data else None)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self.send(text_data=rendering.notice_frame(turns.NOT_UNDERSTOOD))
            return
        if self.conversation is None:
            await self._start(content)
            return
        for frame in await turns.handle(self.conversation, content):
            await self.send(text_data=frame)

    async def _start(self, fields: dict[str, Any]) -> None:
        """The new-chat page's first message: create the conversation, then follow it on this socket."""
        started = await turns.start_from_socket(self.scope["user"], fields)
        if isinstance(started, str):
            await self.send(text_data=started)  # a notice: nothing was created
            return
        conversation, frames = started
        await self._follow(conversation, since=None)
        for frame in frames:
            await self.send(text_data=frame)

    async def decode_json(self, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            return None

    # --- fanout.Subscriber ---

    async def deliver(self, event: dict[str, Any]) -> None:
        if event["kind"] == "account_closed":
            try:
                for frame in event["frames"]:
                    await self.send(text_data=frame)
                await self.close(code=CLOSE_FORBIDDEN)
            except Exception:
                logger.debug("Could not close a deactivated account's socket", exc_info=True)
            return
        try:
            frames = self.subscription.accept(event)
        except Gap as gap:
            logger.info("Page of conversation %s missed an event (%s); resyncing", self.key, gap)
            await self.reconnect()
            return
        try:
            send = self.scope.get(DIRECT_SEND) or self.base_send
            for frame in frames:
                await send({"type": "websocket.send", "text": frame})
            if event["kind"] == "deleted":  # nothing left to follow: the page must not reconnect
                await self.hub.unsubscribe(self.key, self)
                await self.close(code=CLOSE_FORBIDDEN)
        except Exception:
            logger.debug("Could not send a frame to a closing socket", exc_info=True)

    async def reconnect(self) -> None:
        await self.hub.unsubscribe(self.key, self)
        try:
            await self.close(code=CLOSE_RESYNC)
        except Exception:
            logger.debug("Socket already gone", exc_info=True)
