"""Stored conversations for tests, built the way the app stores them (each message after its parent)."""

from __future__ import annotations

from typing import Any

from chat import search
from chat.models import Conversation, Message


def stored_turn(conversation: Conversation, question: str, answer: str, **reply_fields: Any) -> Message:
    """Add a user message and its reply after the conversation's current leaf; return the reply."""
    user_message = Message.objects.create(
        conversation=conversation, parent_id=conversation.current_leaf_id, role="user", content=question
    )
    reply_fields.setdefault("status", Message.Status.COMPLETE)
    reply_fields.setdefault("model", conversation.model)
    reply = Message.objects.create(
        conversation=conversation, parent=user_message, role="assistant", content=answer, **reply_fields
    )
    conversation.current_leaf = reply
    conversation.save(update_fields=["current_leaf"])
    ended = [] if reply.status == Message.Status.STREAMING else [reply.pk]
    search.index_messages([user_message.pk, *ended])  # as storing and ending a reply do
    return reply
