"""What the site keeps of its users, and for how long: the retention purge, a user's export, erasure.

Conversations are deleted in batches of ``BATCH_SIZE``, each in its own transaction, so purging
100,000 of them never holds a lock longer than one batch takes, and a run that is cut short keeps
what it finished. Each batch is chosen again under its lock: a conversation that became active, or
began writing a reply, since the operator saw the count is left alone.

Nothing of a deleted conversation stays. Its messages and its row go with one statement each per
batch, and the search index goes with them. On PostgreSQL the ``tsvector`` lives on the message rows
and titles are indexed by expression. On SQLite the FTS5 entries are deleted here, by id, rather than
left to the delete triggers of migration ``0005_search``: SQLite rebuilds a table to add a column,
and the rebuild of ``chat_message`` in ``0006`` dropped its trigger.

What staff did stays on record (who read a transcript, what the admin changed, and when) but loses
the conversation's words. After each batch, replies still being written stop and open pages say the
conversation is gone, as when its owner deletes it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO

from channels.db import database_sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models, transaction
from django.db.models import CharField, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from chat import events, exporting, preferences, turns
from chat.models import Conversation, Invite, Message, Preferences, TranscriptView

BATCH_SIZE = 500
ACCOUNT_FORMAT = "chat-account/1"


@dataclass(frozen=True)
class Tally:
    conversations: int = 0
    messages: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.conversations + other.conversations, self.messages + other.messages)


@dataclass(frozen=True)
class Batch:
    """Conversations deleted in one transaction, and the replies they were still writing."""

    conversation_ids: list[uuid.UUID]
    messages: int
    writing: list[Message]  # only ``pk`` and ``worker``: enough to stop their generations


# --- Choosing ------------------------------------------------------------------------------------


def cutoff(days: int) -> datetime:
    return timezone.now() - timedelta(days=days)


def expired(*, before: datetime, owner: AbstractBaseUser | None = None) -> QuerySet[Conversation]:
    """Conversations last updated before ``before`` and writing no reply: what the purge deletes.

    A reply left streaming by a dead worker also keeps its conversation: the sweep ends it (and
    that counts as activity), so no reply is ever deleted from under a worker that might be alive.
    """
    writing = Message.objects.filter(status=Message.Status.STREAMING).values("conversation_id")
    conversations = Conversation.objects.filter(updated_at__lt=before).exclude(pk__in=writing)
    return conversations.filter(owner=owner) if owner is not None else conversations


def kept_writing(*, before: datetime, owner: AbstractBaseUser | None = None) -> int:
    """How many conversations old enough to go are kept because a reply is being written in them."""
    writing = Message.objects.filter(status=Message.Status.STREAMING).values("conversation_id")
    conversations = Conversation.objects.filter(updated_at__lt=before, pk__in=writing)
    return (conversations.filter(owner=owner) if owner is not None else conversations).count()


def tally(conversations: QuerySet[Conversation]) -> Tally:
    """How many conversations, and messages in them, ``conversations`` holds now."""
    return Tally(
        conversations=conversations.count(),
        messages=Message.objects.filter(conversation_id__in=conversations.values("pk")).count(),
    )


# --- Deleting ------------------------------------------------------------------------------------


def delete_batch(
    conversations: QuerySet[Conversation], *, after: uuid.UUID | None = None, size: int = BATCH_SIZE
) -> Batch | None:
    """Delete the next ``size`` of ``conversations`` by id (those after ``after``); None when none are left.

    One transaction: the chosen rows are locked and the query's conditions hold for them when they go.
    """
    chosen = conversations.order_by("pk")
    if after is not None:
        chosen = chosen.filter(pk__gt=after)
    with transaction.atomic():
        ids = list(chosen.select_for_update().values_list("pk", flat=True)[:size])
        if not ids:
            return None
        writing = list(
            Message.objects.select_for_update()
            .filter(conversation_id__in=ids, status=Message.Status.STREAMING)
            .only("pk", "worker")
        )
        messages = _forget(ids)
    return Batch(conversation_ids=ids, messages=messages, writing=writing)


def _forget(conversation_ids: list[uuid.UUID]) -> int:
    """Delete these conversations and their messages, leaving no words of theirs behind."""
    messages = Message.objects.filter(conversation_id__in=conversation_ids)
    _scrub_admin_history(Message, messages.annotate(key=Cast("pk", CharField())).values("key"))
    _scrub_admin_history(Conversation, [str(pk) for pk in conversation_ids])
    TranscriptView.objects.filter(conversation_id__in=conversation_ids).update(
        conversation=None, conversation_title=""
    )
    # Plain DELETEs, not the ORM's collector, which would read every message of the batch first.
    # The rows point at each other (replies at their parents, a conversation at its shown reply):
    # the foreign keys are checked when the transaction commits, by which time all of them are gone.
    keys = [Conversation._meta.pk.get_db_prep_value(pk, connection) for pk in conversation_ids]
    marks = ",".join(["%s"] * len(keys))
    quote = connection.ops.quote_name
    message_meta, conversation_meta = Message._meta, Conversation._meta
    conversation_column = message_meta.get_field("conversation").column
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "DELETE FROM chat_message_fts WHERE rowid IN "
                f"(SELECT id FROM chat_message WHERE conversation_id IN ({marks}))",
                keys,
            )
            cursor.execute(f"DELETE FROM chat_title_fts WHERE conversation_id IN ({marks})", keys)
        cursor.execute(
            f"DELETE FROM {quote(message_meta.db_table)} WHERE {quote(conversation_column)} IN ({marks})",
            keys,
        )
        deleted = cursor.rowcount
        cursor.execute(
            f"DELETE FROM {quote(conversation_meta.db_table)} "
            f"WHERE {quote(conversation_meta.pk.column)} IN ({marks})",
            keys,
        )
    return deleted


def _scrub_admin_history(model: type[models.Model], object_ids: Any) -> None:
    """The admin's record of changes to these objects keeps who did what and when, not their text."""
    content_type = ContentType.objects.get_for_model(model)
    LogEntry.objects.filter(content_type=content_type, object_id__in=object_ids).update(object_repr="")


async def delete_all(conversations: QuerySet[Conversation], *, size: int = BATCH_SIZE) -> Tally:
    """Delete every conversation ``conversations`` selects, batch by batch, telling pages as it goes."""
    total = Tally()
    after = None
    while (
        batch := await database_sync_to_async(delete_batch)(conversations, after=after, size=size)
    ) is not None:
        await _announce(batch)
        total += Tally(len(batch.conversation_ids), batch.messages)
        after = batch.conversation_ids[-1]
    return total


async def _announce(batch: Batch) -> None:
    """What deleting a conversation from its page does once it is gone: stop its reply, tell its pages."""
    await turns.stop_replies(batch.writing)
    for conversation_id in batch.conversation_ids:  # one at a time: Redis pools 100 connections
        await events.publish_deleted(conversation_id)


async def purge(*, before: datetime, owner: AbstractBaseUser | None = None, size: int = BATCH_SIZE) -> Tally:
    """The retention policy: delete the conversations last updated before ``before`` (one owner's, or all)."""
    return await delete_all(expired(before=before, owner=owner), size=size)


# --- A user's data -------------------------------------------------------------------------------


def account_record(user: Any) -> dict[str, Any]:
    """The account as its owner may see it: who, since when, what they chose. No password hash."""
    return {
        "format": ACCOUNT_FORMAT,
        "username": user.get_username(),
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": _time(user.date_joined),
        "last_login": _time(user.last_login),
        "preferences": {"theme": preferences.theme_of(user)},
    }


async def write_conversations(user: AbstractBaseUser, out: TextIO) -> int:
    """Write ``user``'s conversations to ``out`` exactly as "Export all" serves them; return how many.

    The file is the export's own, so it imports as it is, and it is written a conversation at a time.
    """
    chunks = 0
    async for chunk in exporting.export_all_async(user):
        out.write(chunk)  # a local file: the command's loop has nothing else to serve meanwhile
        chunks += 1
    return chunks - 2  # the list's opening and closing chunks around one chunk per conversation


@dataclass(frozen=True)
class Erasure:
    conversations: int
    messages: int
    preferences: bool
    account: bool


def user_tally(user: AbstractBaseUser) -> Tally:
    return tally(Conversation.objects.filter(owner=user))


async def erase_user(user: Any, *, keep_account: bool = False, size: int = BATCH_SIZE) -> Erasure:
    """Delete everything of ``user``: conversations, preferences and, unless ``keep_account``, the account.

    The account is deactivated first, so its pages close and it starts nothing new while its
    conversations go; replies still being written in them are stopped.
    """
    if not keep_account:
        await database_sync_to_async(_deactivate)(user)
    deleted = await delete_all(Conversation.objects.filter(owner=user), size=size)
    had_preferences = await database_sync_to_async(_delete_account)(user, keep_account=keep_account)
    return Erasure(deleted.conversations, deleted.messages, had_preferences, account=not keep_account)


def _deactivate(user: Any) -> None:
    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])  # chat.accounts closes the account's pages on commit


def _delete_account(user: Any, *, keep_account: bool) -> bool:
    """Delete the preferences and, unless ``keep_account``, the account; True if there were preferences."""
    with transaction.atomic():
        had_preferences = Preferences.objects.filter(user=user).delete()[0] > 0
        if keep_account:
            return had_preferences
        # Records that outlive the account keep what staff did, not who the account was.
        TranscriptView.objects.filter(owner=user).update(owner_name="")
        Invite.objects.filter(used_by=user).update(email="")
        _scrub_admin_history(type(user), [str(user.pk)])
        user.delete()  # with it its usage, its account request and any conversation begun meanwhile
    return had_preferences


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
