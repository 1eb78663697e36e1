"""A turn: the user's message and the reply it asks for, validated, stored, announced and started.

Shared by the new-chat view and the conversation socket, so both keep the same
order: store and commit first, tell subscribers second, call the upstream last.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError

from chat import providers, rendering, selectors, services, streaming
from chat.models import Conversation, Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostOutcome:
    ok: bool
    frame: str  # what the sender's socket is told: an acknowledgement or a notice


async def post_message(conversation: Conversation, fields: dict[str, Any]) -> PostOutcome:
    """Validate and store a message sent over the socket, then start its reply."""
    try:
        text = services.clean_text(fields.get("text"))
        model = services.clean_model(fields.get("model"), default=conversation.model)
        client_id = services.clean_client_id(fields.get("client_id"))
    except ValidationError as exc:
        return PostOutcome(ok=False, frame=rendering.notice_frame(exc.messages[0]))
    turn = await database_sync_to_async(services.message_post)(
        conversation=conversation, text=text, model=model, client_id=client_id
    )
    if turn.created:
        await announce_and_start(turn)
    return PostOutcome(ok=True, frame=rendering.composer_ack_frame(str(uuid.uuid4())))


async def announce_and_start(turn: services.PostedTurn) -> streaming.Generation:
    """Show the new messages on every subscribed page, then start the reply (in that order)."""
    reply = turn.reply
    html = await database_sync_to_async(rendering.messages_appended_frame)([turn.user_message, reply])
    try:
        await get_channel_layer().group_send(
            streaming.group_name(reply.conversation_id), {"type": "chat.frame", "html": html}
        )
    except Exception:
        # Pages that missed it catch up when they reconnect; the reply must still start.
        logger.warning("Could not announce reply %s", reply.pk, exc_info=True)
    endpoint = await database_sync_to_async(providers.default_endpoint)()
    return streaming.start(reply, endpoint=endpoint)


async def snapshot_frames(conversation: Conversation) -> list[tuple[str, int, int]]:
    """For each reply still being written: its element with the text so far, its id and sequence number."""
    frames = []
    for message in await database_sync_to_async(selectors.streaming_messages)(conversation=conversation):
        seq = live_text(message)
        frames.append((await database_sync_to_async(rendering.message_frame)(message), message.pk, seq))
    return frames


def live_text(message: Message) -> int:
    """Put the text published so far on a streaming ``message`` (not saved); return its sequence number."""
    generation = streaming.running(message.pk)
    if generation is None:
        return 0
    message.content, seq = generation.snapshot()
    return seq
