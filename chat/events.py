"""Conversation events outside the versioned stream: a new title, a deletion.

A title replaces what the page shows wholesale, so it needs no ordering; a deletion ends every
page's socket on the conversation. Both reach every worker's pages through the hub.
"""

from __future__ import annotations

import uuid

from channels.db import database_sync_to_async

from chat import fanout, rendering
from chat.models import Conversation


async def publish_title(conversation_id: uuid.UUID, frames: list[str] | None = None) -> None:
    """Every page open on the conversation shows its current title (header, sidebar, tab).

    ``frames``: ``rendering.title_frames`` when the caller has them already.
    """
    if frames is None:
        frames = await database_sync_to_async(_title_frames)(conversation_id)
    if frames:
        hub = await fanout.get_hub()
        await hub.publish(conversation_id.hex, {"kind": "meta", "frames": frames})


def _title_frames(conversation_id: uuid.UUID) -> list[str]:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    return rendering.title_frames(conversation) if conversation else []


async def publish_deleted(conversation_id: uuid.UUID) -> None:
    """Pages open on a deleted conversation say so, and their sockets close for good."""
    hub = await fanout.get_hub()
    await hub.publish(conversation_id.hex, {"kind": "deleted", "frames": [rendering.deleted_frame()]})
