"""The conversation socket: authorise, subscribe, forward frames, take commands. Nothing else."""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from chat import rendering, selectors, streaming, turns

logger = logging.getLogger(__name__)

# Close codes in the application range (4000-4999), so the page does not retry them.
CLOSE_FORBIDDEN = 4403


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        try:
            self.conversation = await database_sync_to_async(selectors.conversation_for_user)(
                user, self.scope["url_route"]["kwargs"]["conversation_id"]
            )
        except Http404:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.user = user
        self.group = streaming.group_name(self.conversation.pk)
        # Join first, then snapshot: frames published in between are filtered by sequence number.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.seen: dict[int, int] = {}
        for html, message_id, seq in await turns.snapshot_frames(self.conversation):
            self.seen[message_id] = seq
            await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self.send(text_data=rendering.notice_frame("That request was not understood."))
            return
        result = await turns.post_message(self.conversation, content)
        await self.send(text_data=result.frame)

    async def decode_json(self, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    async def chat_frame(self, event: dict[str, Any]) -> None:
        message_id = event.get("message_id")
        if message_id is not None and event["seq"] <= self.seen.get(message_id, 0):
            return  # already in this page's snapshot
        await self.send(text_data=event["html"])
