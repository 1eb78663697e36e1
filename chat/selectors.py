"""Reads shared by views, the consumer and the streaming engine.

``conversation_for_user`` is the single access check: anything a user may not
see is a 404, whether it does not exist or belongs to someone else.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from chat.models import Conversation, Message


def conversation_for_user(
    user: AbstractBaseUser | AnonymousUser, conversation_id: uuid.UUID | str
) -> Conversation:
    """The user's conversation, or ``Http404`` for anything else (missing, foreign, malformed id)."""
    if not user.is_authenticated:
        raise Http404("No such conversation.")
    try:
        key = conversation_id if isinstance(conversation_id, uuid.UUID) else uuid.UUID(str(conversation_id))
        return Conversation.objects.get(pk=key, owner=user)
    except (ValueError, Conversation.DoesNotExist):
        raise Http404("No such conversation.") from None


def conversation_list(*, user: AbstractBaseUser, limit: int = 100) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user).order_by("-updated_at")[:limit]


def conversation_messages(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("created_at", "id"))


def streaming_messages(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.filter(status=Message.Status.STREAMING).order_by("id"))


def reply_history(*, reply: Message) -> list[dict[str, str]]:
    """What goes upstream for ``reply``: the system prompt and every message before it.

    Empty assistant turns (a reply that failed before its first token) are left
    out; partial text of a stopped or failed reply is kept, as it is on screen.
    """
    history: list[dict[str, str]] = []
    if settings.CHAT_SYSTEM_PROMPT:
        history.append({"role": "system", "content": settings.CHAT_SYSTEM_PROMPT})
    earlier = (
        reply.conversation.messages.filter(id__lt=reply.id).order_by("id").values_list("role", "content")
    )
    for role, content in earlier:
        if role == Message.Role.ASSISTANT and not content:
            continue
        history.append({"role": role, "content": content})
    return history
