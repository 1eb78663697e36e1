"""Events outside the versioned stream: a new title, a deletion, an account closed.

A title replaces what the page shows wholesale, so it needs no ordering; a deletion ends every
page's socket on the conversation, and a deactivation every socket of the account. All reach
every worker's pages through the hub (an account's sockets listen on ``user_key``).
"""

from __future__ import annotations

import uuid

from channels.db import database_sync_to_async

from chat import fanout, rendering
from chat.models import Conversation, Message

ACCOUNT_CLOSED = "Your account has been deactivated by an administrator; this page no longer updates."


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


def user_key(user_id: int) -> str:
    """The hub key every socket of one account listens on."""
    return f"user-{user_id}"


async def close_account(user_id: int) -> None:
    """A deactivated account: its replies stop (their text is kept) and its sockets close for good."""
    streaming = Message.objects.filter(conversation__owner_id=user_id, status=Message.Status.STREAMING)
    replies = [reply async for reply in streaming.only("id", "worker")]
    hub = await fanout.get_hub()
    for reply in replies:
        if reply.worker:
            await hub.send_command(reply.worker, "stop", reply_id=reply.pk)
    frame = rendering.notice_frame(ACCOUNT_CLOSED)
    await hub.publish(user_key(user_id), {"kind": "account_closed", "frames": [frame]})
