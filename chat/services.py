"""Writes: each service is one transaction, and nothing outside hears of it before it commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.models import Conversation, Message

TITLE_LENGTH = 60


@dataclass(frozen=True)
class PostedTurn:
    """A stored user message and the assistant reply row that will hold the answer."""

    user_message: Message
    reply: Message
    created: bool  # False when the same client_id was posted before


def clean_text(text: object) -> str:
    """The message text, or ``ValidationError`` with a sentence the user can act on."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("Type a message first.")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ValidationError(
            f"That message is too long ({len(text):,} characters; the limit is "
            f"{settings.CHAT_MAX_MESSAGE_CHARS:,})."
        )
    return text.replace("\r\n", "\n")


def clean_model(model: object, *, default: str) -> str:
    if model is None or model == "":
        return default
    if not isinstance(model, str) or len(model) > 200 or not model.strip():
        raise ValidationError("Choose a model from the list.")
    return model.strip()


def clean_client_id(client_id: object) -> uuid.UUID | None:
    if client_id in (None, ""):
        return None
    try:
        return uuid.UUID(str(client_id))
    except ValueError:
        raise ValidationError("The page is out of date; reload it and send again.") from None


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


def conversation_start(*, user: AbstractBaseUser, text: str, model: str) -> PostedTurn:
    """Create a conversation with its first message and the reply row, in one transaction."""
    with transaction.atomic():
        conversation = Conversation.objects.create(owner=user, title=title_from(text), model=model)
        return _post(conversation, text=text, model=model, client_id=None)


def message_post(
    *, conversation: Conversation, text: str, model: str, client_id: uuid.UUID | None = None
) -> PostedTurn:
    """Store the user's message and an empty ``streaming`` reply; idempotent per ``client_id``."""
    if client_id is not None:
        existing = _existing_turn(conversation, client_id)
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
            fields = {"model": model, "updated_at": timezone.now()}
            if not locked.title:
                fields["title"] = title_from(text)
            Conversation.objects.filter(pk=locked.pk).update(**fields)
            return _post(locked, text=text, model=model, client_id=client_id)
    except IntegrityError:
        # The same client_id raced in from another socket: the first one won.
        existing = _existing_turn(conversation, client_id) if client_id else None
        if existing is None:
            raise
        return existing


def _post(conversation: Conversation, *, text: str, model: str, client_id: uuid.UUID | None) -> PostedTurn:
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=text, client_id=client_id
    )
    reply = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
    )
    return PostedTurn(user_message=user_message, reply=reply, created=True)


def _existing_turn(conversation: Conversation, client_id: uuid.UUID) -> PostedTurn | None:
    user_message = conversation.messages.filter(client_id=client_id).first()
    if user_message is None:
        return None
    reply = (
        conversation.messages.filter(id__gt=user_message.id, role=Message.Role.ASSISTANT)
        .order_by("id")
        .first()
    )
    if reply is None:
        return None
    return PostedTurn(user_message=user_message, reply=reply, created=False)


def reply_checkpoint(*, reply_id: int, text: str) -> None:
    """Save the text so far, so a worker that dies loses at most one checkpoint interval."""
    Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING).update(
        content=text, updated_at=timezone.now()
    )


@dataclass(frozen=True)
class ReplyEnding:
    status: str
    text: str
    finish_reason: str = ""
    error: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    first_token_ms: int | None = None
    duration_ms: int | None = None


def reply_finish(*, reply_id: int, ending: ReplyEnding) -> Message | None:
    """Record how a reply ended; a reply that already ended is left as it is (returns None)."""
    now = timezone.now()
    with transaction.atomic():
        updated = Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING).update(
            status=ending.status,
            content=ending.text,
            finish_reason=ending.finish_reason,
            error=ending.error,
            prompt_tokens=ending.prompt_tokens,
            completion_tokens=ending.completion_tokens,
            total_tokens=ending.total_tokens,
            first_token_ms=ending.first_token_ms,
            duration_ms=ending.duration_ms,
            updated_at=now,
        )
        if not updated:
            return None
        reply = Message.objects.select_related("conversation").get(pk=reply_id)
        Conversation.objects.filter(pk=reply.conversation_id).update(updated_at=now)
    return reply
