"""Writes: each service is one transaction, and nothing outside hears of it before it commits."""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat import limits, markdown, search, selectors, usage
from chat.models import Conversation, Message
from chat.storable import storable

TITLE_LENGTH = 60


BUSY = "A reply is still being written. Stop it or wait for it to finish first."


class Current(enum.Enum):
    """``provider_id=Current.PROVIDER``: keep the conversation's provider (None is the environment's)."""

    PROVIDER = "the conversation's provider"


@dataclass(frozen=True)
class PostedTurn:
    """A stored turn: the user's message (none for a regenerated reply) and the reply row to fill."""

    user_message: Message | None
    reply: Message
    created: bool  # False when the same client_id was posted before
    version: int  # the conversation's version after this turn
    forked: bool = False  # True when the turn starts a new branch (pages redraw the conversation)

    @property
    def refused(self) -> bool:
        """A limit refused the reply: it ended at once, and nothing goes upstream."""
        return bool(self.reply.refused_by)


def clean_text(text: object) -> str:
    """The message text, or ``ValidationError`` with a sentence the user can act on."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("Type a message first.")
    return _within_limit(text, "That message")


def _within_limit(text: str, what: str) -> str:
    """``text`` made storable, with browser line ends made plain, if it is not longer than allowed."""
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise ValidationError(f"{what} is too long ({len(text):,} characters; the limit is {limit:,}).")
    return storable(text).replace("\r\n", "\n")


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


def lease_until() -> datetime:
    return timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS)


def conversation_start(
    *,
    user: AbstractBaseUser,
    text: str,
    model: str,
    worker: str,
    provider_id: int | None = None,
    client_id: uuid.UUID | None = None,
) -> PostedTurn:
    """Create a conversation with its first message and the reply row, in one transaction.

    Idempotent per ``client_id``: the same first message sent again (after a reconnect) finds the
    conversation it created.
    """
    if client_id is not None:
        first = Message.objects.filter(
            client_id=client_id, role=Message.Role.USER, conversation__owner=user, parent=None
        ).first()
        if first is not None:
            existing = _existing_turn(first.conversation, client_id)
            if existing is not None:
                return existing
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=user, title=title_from(text), model=model, provider_id=provider_id
        )
        search.index_title([conversation.pk])
        return _add_turn(
            conversation,
            parent_id=None,
            text=text,
            model=model,
            provider_id=provider_id,
            client_id=client_id,
            worker=worker,
        )


def message_post(
    *,
    conversation: Conversation,
    text: str,
    model: str,
    worker: str,
    client_id: uuid.UUID | None = None,
    provider_id: int | Current | None = Current.PROVIDER,
) -> PostedTurn:
    """Store the user's message after the branch on screen, and an empty ``streaming`` reply.

    Idempotent per ``client_id``; refused while another reply of the conversation is streaming.
    The model and provider become the conversation's choice for its next replies.

    A message sent again (a page that reconnected) is found only when storing it fails: its
    ``client_id`` is taken, or its reply still streams. A new message, the usual case, pays for
    no lookup before its reply can start.
    """
    try:
        with transaction.atomic():
            locked = _lock_idle(conversation)
            return _add_turn(
                locked,
                parent_id=locked.current_leaf_id,
                text=text,
                model=model,
                provider_id=locked.provider_id if provider_id is Current.PROVIDER else provider_id,
                client_id=client_id,
                worker=worker,
            )
    except (IntegrityError, ValidationError) as exc:
        if isinstance(exc, ValidationError) and exc.messages != [BUSY]:
            raise
        # Sent before (or raced in from another socket): the first one stands.
        existing = _existing_turn(conversation, client_id) if client_id else None
        if existing is None:
            raise
        return existing


def reply_regenerate(
    *,
    conversation: Conversation,
    message_id: object,
    model: str,
    worker: str,
    provider_id: int | Current | None = Current.PROVIDER,
) -> PostedTurn:
    """Write a new version of an assistant reply; the earlier versions are kept as its siblings.

    An empty ``model`` means the conversation's current provider and model.
    """
    with transaction.atomic():
        locked = _lock_idle(conversation)
        original = _message_in(locked, message_id, role=Message.Role.ASSISTANT)
        model, provider_id = _choice(locked, model, provider_id)
        reply = _new_reply(
            locked, parent_id=original.parent_id, model=model, provider_id=provider_id, worker=worker
        )
        version = _move_leaf(locked, reply)
        return PostedTurn(user_message=None, reply=reply, created=True, version=version, forked=True)


def message_edit(
    *,
    conversation: Conversation,
    message_id: object,
    text: str,
    model: str,
    worker: str,
    provider_id: int | Current | None = Current.PROVIDER,
) -> PostedTurn:
    """Send an edited copy of a user message as a new branch; the original stays as a version.

    An empty ``model`` means the conversation's current provider and model.
    """
    with transaction.atomic():
        locked = _lock_idle(conversation)
        original = _message_in(locked, message_id, role=Message.Role.USER)
        model, provider_id = _choice(locked, model, provider_id)
        turn = _add_turn(
            locked,
            parent_id=original.parent_id,
            text=text,
            model=model,
            provider_id=provider_id,
            client_id=None,
            worker=worker,
        )
        return PostedTurn(
            user_message=turn.user_message, reply=turn.reply, created=True, version=turn.version, forked=True
        )


def branch_switch(*, conversation: Conversation, message_id: object) -> int:
    """Show the version ``message_id`` of its turn (and the newest path below it); return the version."""
    with transaction.atomic():
        locked = _lock_idle(conversation)
        chosen = _message_in(locked, message_id)
        leaf_id = selectors.newest_leaf_below(conversation=locked, message_id=chosen.pk)
        locked.version += 1
        Conversation.objects.filter(pk=locked.pk).update(current_leaf_id=leaf_id, version=locked.version)
        return locked.version


TEMPERATURE_ERROR = "Temperature must be a number from 0 to 2."
MAX_TOKENS_ERROR = "Max tokens must be a whole number of at least 1."
MAX_TOKENS_LIMIT = 2_147_483_647  # what every supported database stores in the column


def clean_temperature(value: object) -> float | None:
    """None (or empty): the model's own default."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(TEMPERATURE_ERROR)
    try:
        temperature = float(value)
    except ValueError:
        raise ValidationError(TEMPERATURE_ERROR) from None
    if not math.isfinite(temperature) or not 0 <= temperature <= 2:
        raise ValidationError(TEMPERATURE_ERROR)
    return temperature


def clean_max_tokens(value: object) -> int | None:
    """None (or empty): no limit is sent."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(MAX_TOKENS_ERROR)
    if isinstance(value, float) and not value.is_integer():
        raise ValidationError(MAX_TOKENS_ERROR)
    try:
        max_tokens = int(value)
    except (ValueError, OverflowError):
        raise ValidationError(MAX_TOKENS_ERROR) from None
    if max_tokens < 1:
        raise ValidationError(MAX_TOKENS_ERROR)
    if max_tokens > MAX_TOKENS_LIMIT:
        raise ValidationError(f"Max tokens can be at most {MAX_TOKENS_LIMIT:,}.")
    return max_tokens


def clean_system_prompt(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError("The system prompt must be text.")
    return _within_limit(value, "The system prompt")


def conversation_settings_update(
    *, conversation: Conversation, system_prompt: object, temperature: object, max_tokens: object
) -> Conversation:
    """Store the conversation's options for its next replies, or raise ``ValidationError`` per field.

    A prompt equal to the site's default is stored as None, so it keeps following the default
    when that changes; an empty prompt means none at all.
    """
    cleaned: dict[str, object] = {}
    errors: dict[str, ValidationError] = {}
    for name, clean, value in (
        ("system_prompt", clean_system_prompt, system_prompt),
        ("temperature", clean_temperature, temperature),
        ("max_tokens", clean_max_tokens, max_tokens),
    ):
        try:
            cleaned[name] = clean(value)
        except ValidationError as exc:
            errors[name] = exc
    if errors:
        raise ValidationError(errors)
    if cleaned["system_prompt"] == settings.CHAT_SYSTEM_PROMPT.replace("\r\n", "\n"):
        cleaned["system_prompt"] = None
    Conversation.objects.filter(pk=conversation.pk).update(**cleaned)
    for name, value in cleaned.items():
        setattr(conversation, name, value)
    return conversation


def _choice(
    conversation: Conversation, model: str, provider_id: int | Current | None
) -> tuple[str, int | None]:
    """The model and provider of a new reply: those given, or the conversation's (locked, so current)."""
    if not model:
        return conversation.model, conversation.provider_id
    return model, conversation.provider_id if provider_id is Current.PROVIDER else provider_id


def _lock_idle(conversation: Conversation) -> Conversation:
    """Lock the conversation row; refuse if one of its replies is still being written."""
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if locked.messages.filter(status=Message.Status.STREAMING).exists():
        raise ValidationError(BUSY)
    return locked


def _message_in(conversation: Conversation, message_id: object, role: str | None = None) -> Message:
    try:
        message = conversation.messages.get(pk=int(str(message_id)))
    except (ValueError, Message.DoesNotExist):
        raise ValidationError("That message is not in this conversation.") from None
    if role is not None and message.role != role:
        raise ValidationError("That message cannot be changed that way.")
    return message


def _add_turn(
    conversation: Conversation,
    *,
    parent_id: int | None,
    text: str,
    model: str,
    provider_id: int | None,
    client_id: uuid.UUID | None,
    worker: str,
) -> PostedTurn:
    user_message = Message.objects.create(
        conversation=conversation,
        parent_id=parent_id,
        role=Message.Role.USER,
        content=text,
        client_id=client_id,
    )
    reply = _new_reply(
        conversation, parent_id=user_message.pk, model=model, provider_id=provider_id, worker=worker
    )
    version = _move_leaf(conversation, reply, title=text)
    search.index_messages([user_message.pk])
    return PostedTurn(user_message=user_message, reply=reply, created=True, version=version)


def _new_reply(
    conversation: Conversation, *, parent_id: int | None, model: str, provider_id: int | None, worker: str
) -> Message:
    """The reply row: ``streaming``, or, when a limit refuses it, already ended with the reason."""
    refusal = limits.admit(user_id=conversation.owner_id)
    if refusal is not None:
        usage.record_refusal(owner_id=conversation.owner_id, model=model)
        return Message.objects.create(
            conversation=conversation,
            parent_id=parent_id,
            role=Message.Role.ASSISTANT,
            status=Message.Status.ERROR,
            error=refusal.text,
            refused_by=refusal.limit,
            model=model,
            provider_id=provider_id,
        )
    return Message.objects.create(
        conversation=conversation,
        parent_id=parent_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
        provider_id=provider_id,
        worker=worker,
        lease_expires_at=lease_until(),
    )


def _move_leaf(conversation: Conversation, reply: Message, *, title: str = "") -> int:
    """Show the branch ending at ``reply``; its model and provider become the conversation's choice."""
    conversation.version += 1
    fields = {
        "current_leaf_id": reply.pk,
        "model": reply.model,
        "provider_id": reply.provider_id,
        "version": conversation.version,
        "updated_at": timezone.now(),
    }
    if not conversation.title and title:
        fields["title"] = title_from(title)
    Conversation.objects.filter(pk=conversation.pk).update(**fields)
    if "title" in fields:
        search.index_title([conversation.pk])
    return conversation.version


def _existing_turn(conversation: Conversation, client_id: uuid.UUID) -> PostedTurn | None:
    user_message = conversation.messages.filter(client_id=client_id).first()
    if user_message is None:
        return None
    reply = user_message.children.filter(role=Message.Role.ASSISTANT).order_by("id").first()
    if reply is None:
        return None
    version = Conversation.objects.values_list("version", flat=True).get(pk=conversation.pk)
    return PostedTurn(user_message=user_message, reply=reply, created=False, version=version)


def reply_omitted(*, reply: Message, omitted: int) -> None:
    """Record that the reply's request left out its ``omitted`` oldest messages (to fit the model)."""
    Message.objects.filter(pk=reply.pk).update(omitted_messages=omitted)
    reply.omitted_messages = omitted


def reply_checkpoint(*, reply_id: int, text: str | None, reasoning: str | None = None) -> None:
    """Save the text (and reasoning) so far and renew the reply's lease (``None``: unchanged).

    A worker that dies loses at most one checkpoint interval of text, and its lease running out
    tells the others it is gone.
    """
    replies_checkpoint([Checkpoint(reply_id, text, reasoning)])


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One reply's row to keep current: its text and reasoning so far (``None``: unchanged)."""

    reply_id: int
    text: str | None
    reasoning: str | None = None


CHECKPOINTS_PER_STATEMENT = 500  # well under SQLite's limit on a statement's parameters


def replies_checkpoint(checkpoints: list[Checkpoint]) -> int:
    """``reply_checkpoint`` for many replies at once; how many rows it updated.

    A worker writing hundreds of replies keeps them all current with one statement per interval
    (per ``CHECKPOINTS_PER_STATEMENT`` replies): every lease renewed, each grown text set by a
    ``CASE`` on the id. Written as SQL: building the same through the ORM's ``Case``/``When`` cost
    four times what the database took to run it.
    """
    updated = 0
    for start in range(0, len(checkpoints), CHECKPOINTS_PER_STATEMENT):
        updated += _checkpoint_statement(checkpoints[start : start + CHECKPOINTS_PER_STATEMENT])
    return updated


def _checkpoint_statement(checkpoints: list[Checkpoint]) -> int:
    if not checkpoints:
        return 0
    meta, quote = Message._meta, connection.ops.quote_name
    column = {name: quote(meta.get_field(name).column) for name in ("id", "content", "reasoning", "status")}
    lease = connection.ops.adapt_datetimefield_value(lease_until())
    sets, params = [f"{quote(meta.get_field('lease_expires_at').column)} = %s"], [lease]
    for field, values in (
        ("content", [(c.reply_id, c.text) for c in checkpoints if c.text is not None]),
        ("reasoning", [(c.reply_id, c.reasoning) for c in checkpoints if c.reasoning is not None]),
    ):
        if values:
            whens = " ".join(["WHEN %s THEN %s"] * len(values))
            sets.append(f"{column[field]} = CASE {column['id']} {whens} ELSE {column[field]} END")
            params += [item for pair in values for item in pair]
    ids = [c.reply_id for c in checkpoints]
    marks = ", ".join(["%s"] * len(ids))
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(sets)} "
        f"WHERE {column['id']} IN ({marks}) AND {column['status']} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *ids, Message.Status.STREAMING])
        return cursor.rowcount


@dataclass(frozen=True)
class ReplyEnding:
    status: str
    text: str | None  # None keeps the last checkpoint (of the reasoning too)
    reasoning: str = ""
    finish_reason: str = ""
    error: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    first_token_ms: int | None = None
    duration_ms: int | None = None
    skipped_chunks: int = 0
    request_id: str = ""
    # The request's size by chat.context's estimate, counted as usage when the server reports none.
    prompt_estimate: int | None = None
    # The text and reasoning as sanitized HTML, as the pages were shown them (None: rendered here).
    html: str | None = None
    reasoning_html: str | None = None


SAVE_FAILED = "The reply could not be saved as it was written; the text so far is kept."


def ending_attempts(ending: ReplyEnding) -> list[ReplyEnding]:
    """How to record ``ending``, in order: as it is, then as storable text, then as an error.

    The last two keep the text so far (stored from the reply's last checkpoint if even the
    storable text is refused), so a reply never ends with nothing because of what it holds.
    """
    clean = replace(
        ending,
        text=storable(ending.text) if ending.text is not None else None,
        reasoning=storable(ending.reasoning),
        error=storable(ending.error),
        finish_reason=storable(ending.finish_reason)[: Message._meta.get_field("finish_reason").max_length],
        html=None,  # rendered again from the storable text
        reasoning_html=None,
    )
    failed = replace(clean, status=Message.Status.ERROR, error=SAVE_FAILED, finish_reason="")
    return [ending, clean, failed, replace(failed, text=None)]


@dataclass(frozen=True)
class EndedReply:
    reply: Message
    version: int  # the conversation's version after the ending


def reply_finish(*, reply_id: int, ending: ReplyEnding, only_if_expired: bool = False) -> EndedReply | None:
    """Record how a reply ended; a reply that already ended is left as it is (returns None)."""
    now = timezone.now()
    streaming = Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING)
    if only_if_expired:
        streaming = streaming.filter(lease_expires_at__lt=now)
    with transaction.atomic():
        conversation_id = streaming.values_list("conversation_id", flat=True).first()
        if conversation_id is None:
            return None
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        if ending.text is None:  # the last checkpoint's text stays; its HTML is rendered from it
            content, reasoning = streaming.values_list("content", "reasoning").get()
            text = {"content_html": markdown.render(content), "reasoning_html": markdown.render(reasoning)}
        else:
            html, thinking = ending.html, ending.reasoning_html
            text = {
                "content": ending.text,
                "reasoning": ending.reasoning,
                "content_html": markdown.render(ending.text) if html is None else html,
                "reasoning_html": markdown.render(ending.reasoning) if thinking is None else thinking,
            }
        updated = streaming.update(
            **text,
            status=ending.status,
            finish_reason=ending.finish_reason,
            error=ending.error,
            prompt_tokens=ending.prompt_tokens,
            completion_tokens=ending.completion_tokens,
            total_tokens=ending.total_tokens,
            first_token_ms=ending.first_token_ms,
            duration_ms=ending.duration_ms,
            skipped_chunks=ending.skipped_chunks,
            request_id=ending.request_id,
            worker="",
            lease_expires_at=None,
            updated_at=now,
        )
        if not updated:
            return None
        search.index_messages([reply_id])
        version = conversation.version + 1
        Conversation.objects.filter(pk=conversation_id).update(updated_at=now, version=version)
        reply = Message.objects.get(pk=reply_id)
        usage.record_ending(
            reply=reply, owner_id=conversation.owner_id, prompt_estimate=ending.prompt_estimate
        )
    return EndedReply(reply=reply, version=version)


def sweep_interrupted(*, conversation_id: uuid.UUID | None = None) -> list[EndedReply]:
    """Mark replies whose worker stopped vouching for them (lease run out) as ``interrupted``.

    Their text is what the last checkpoint saved. A reply still running elsewhere keeps renewing
    its lease, so it is never touched.
    """
    expired = Message.objects.filter(status=Message.Status.STREAMING, lease_expires_at__lt=timezone.now())
    if conversation_id is not None:
        expired = expired.filter(conversation_id=conversation_id)
    ended = []
    for reply_id in expired.values_list("id", flat=True):
        result = reply_finish(
            reply_id=reply_id,
            ending=ReplyEnding(status=Message.Status.INTERRUPTED, text=None),
            only_if_expired=True,
        )
        if result is not None:
            ended.append(result)
    return ended


def clean_title(value: object) -> str:
    """A title a user typed: one line, not blank, within the field's length."""
    title = " ".join(storable(value if isinstance(value, str) else "").split())
    if not title:
        raise ValidationError("A title cannot be empty.")
    limit = Conversation._meta.get_field("title").max_length
    if len(title) > limit:
        raise ValidationError(f"A title can be at most {limit} characters long.")
    return title


def conversation_rename(*, conversation: Conversation, title: object) -> Conversation:
    """Rename a conversation; the user's title wins over any written by the model, now or later."""
    conversation.title = clean_title(title)
    conversation.title_source = Conversation.TitleSource.USER
    # Not activity: the conversation keeps its place in the sidebar.
    Conversation.objects.filter(pk=conversation.pk).update(
        title=conversation.title, title_source=conversation.title_source
    )
    search.index_title([conversation.pk])
    return conversation


def conversation_delete(*, conversation: Conversation) -> list[Message]:
    """Delete a conversation and everything in it; returns the replies that were still streaming.

    Their generations find no row left to write to and end quietly; the caller stops them so
    they stop costing tokens upstream.
    """
    with transaction.atomic():
        streaming = list(
            Message.objects.select_for_update()
            .filter(conversation=conversation, status=Message.Status.STREAMING)
            .only("pk", "worker")
        )
        conversation.delete()
    return streaming
