"""Storing conversations read from other chat products' export files (``chat.importers``).

A file is imported whole or not at all: one transaction, so a file that turns out broken halfway
leaves nothing behind. Each conversation costs a fixed number of queries however many messages it
has (the messages are created together, then linked to their parents), and only one conversation
is in memory at a time.

A file is read twice. The first pass checks every conversation and writes nothing, so a broken
file is refused before the database is touched, and the second pass knows how many conversations
to expect. The second pass writes in one transaction: on SQLite that holds the database's write
lock (every reply being written waits for it), so the lock is held only while writing a file
already known to be good, never while reading one that fails at its end. Both passes report their
progress (bytes read, conversations done) to an optional callback a few times a second.

What this product has no place for is mapped, not lost: system messages at the start become the
conversation's system prompt; a system message further down is left out and its replies hang from
its parent. Every text goes through ``storable`` (the rule for text any database takes), and
replies are rendered as they would be at a reply's ending, so opening an imported conversation
renders nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from chat import importers, markdown, search
from chat.importers import ImportedConversation
from chat.models import Conversation, Message
from chat.services import title_from
from chat.storable import storable

TITLE_CHARS = Conversation._meta.get_field("title").max_length
MODEL_CHARS = Message._meta.get_field("model").max_length


@dataclass(frozen=True, slots=True)
class ImportResult:
    conversations: int
    messages: int


CHECKING = "checking"
WRITING = "writing"


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """How far an import has got: ``phase`` is ``CHECKING`` (no writes yet) or ``WRITING``.

    ``total`` is known once the check has counted the conversations (None while checking).
    """

    phase: str
    bytes_read: int
    size: int
    conversations: int
    total: int | None


ProgressCallback = Callable[[ImportProgress], None]


def import_file(
    *,
    user: AbstractBaseUser,
    file: BinaryIO,
    progress: ProgressCallback | None = None,
    every: float = 0.5,
) -> ImportResult:
    """Every conversation in ``file`` becomes ``user``'s; an ``ImportFormatError`` imports nothing.

    ``file`` must be seekable (an upload is: Django keeps large ones in a temporary file).
    ``progress`` is called at the start of each pass and then at most every ``every`` seconds.
    """
    size = _size(file)
    reporter = _Reporter(file, size, progress, every)
    reporter.report(CHECKING, 0, None, force=True)
    total = 0
    for _ in importers.read(file):
        total += 1
        reporter.report(CHECKING, total, None)
    file.seek(0)
    conversations = messages = 0
    reporter.report(WRITING, 0, total, force=True)
    with transaction.atomic():
        for imported in importers.read(file):
            messages += store(user=user, imported=imported)
            conversations += 1
            reporter.report(WRITING, conversations, total)
    return ImportResult(conversations=conversations, messages=messages)


class _Reporter:
    """Calls the progress callback at most every ``every`` seconds, with the file's position."""

    def __init__(self, file: BinaryIO, size: int, callback: ProgressCallback | None, every: float) -> None:
        self._file = file
        self._size = size
        self._callback = callback
        self._every = every
        self._last = 0.0

    def report(self, phase: str, conversations: int, total: int | None, *, force: bool = False) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self._every:
            return
        self._last = now
        position = min(self._file.tell(), self._size)  # the parser reads ahead a little
        self._callback(ImportProgress(phase, position, self._size, conversations, total))


def _size(file: BinaryIO) -> int:
    """The file's length in bytes, without reading it."""
    size = getattr(file, "size", None)
    if isinstance(size, int):
        return size
    try:
        return os.fstat(file.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        position = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(position)
        return end


def store(*, user: AbstractBaseUser, imported: ImportedConversation) -> int:
    """One imported conversation as ``user``'s; returns how many messages it holds here."""
    prompt: list[str] = []
    kept = []
    parent_of: dict[str, str | None] = {}  # every source key -> the kept key it hangs from
    for message in imported.messages:
        parent = parent_of.get(message.parent_key) if message.parent_key is not None else None
        if message.role == "system":
            if parent is None and not kept:
                prompt.append(storable(message.content))
            parent_of[message.key] = parent
            continue
        parent_of[message.key] = message.key
        kept.append((message, parent))
    first_user = next((m.content for m, _ in kept if m.role == "user"), "")
    options = imported.settings
    conversation = Conversation.objects.create(
        owner=user,
        title=storable(imported.title).strip()[:TITLE_CHARS] or title_from(storable(first_user)),
        title_source=Conversation.TitleSource.IMPORTED,
        model=storable(options.get("model") or settings.CHAT_MODEL)[:MODEL_CHARS],
        system_prompt=_prompt(options.get("system_prompt"), prompt),
        temperature=options.get("temperature"),
        max_tokens=options.get("max_tokens"),
    )
    rows = Message.objects.bulk_create([_row(conversation, message) for message, _ in kept])
    pk_of = {message.key: row.pk for (message, _), row in zip(kept, rows, strict=True)}
    now = timezone.now()
    for (message, parent), row in zip(kept, rows, strict=True):
        row.parent_id = pk_of[parent] if parent is not None else None
        row.created_at = row.updated_at = message.created_at or imported.created_at or now
    _link(rows)
    current = parent_of.get(imported.current_key) if imported.current_key is not None else None
    Conversation.objects.filter(pk=conversation.pk).update(
        current_leaf_id=pk_of.get(current) if current is not None else _last_leaf(rows),
        version=1,
        created_at=imported.created_at or _earliest(rows) or now,
        updated_at=imported.updated_at or _latest(rows) or now,
    )
    search.index_messages(row.pk for row in rows if row.status != Message.Status.STREAMING)
    search.index_title([conversation.pk])
    return len(rows)


def _link(rows: list[Message]) -> None:
    """Store each new row's parent and times, which only exist once every row has its id.

    One ``executemany`` of a plain UPDATE: ``bulk_update`` builds a CASE expression per field and
    row, which made it half of an import's time (about 16 ms for a conversation of 9 messages).
    """
    meta = Message._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in ("parent", "created_at", "updated_at")]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
    params = [
        [
            row.parent_id,
            *(field.get_db_prep_value(getattr(row, field.attname), connection) for field in fields[1:]),
            row.pk,
        ]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _row(conversation: Conversation, message: importers.ImportedMessage) -> Message:
    content, reasoning = storable(message.content), storable(message.reasoning)
    reply = message.role == "assistant"
    return Message(
        conversation=conversation,
        role=message.role,
        content=content,
        reasoning=reasoning,
        model=storable(message.model)[:MODEL_CHARS],
        content_html=markdown.render(content) if reply else "",
        reasoning_html=markdown.render(reasoning) if reply and reasoning else "",
        **{key: storable(v) if isinstance(v, str) else v for key, v in message.details.items()},
    )


def _prompt(own: str | None, leading: list[str]) -> str | None:
    """The conversation's system prompt: its own (this product's exports), else leading system messages."""
    if own is not None:
        return storable(own)
    return "\n\n".join(leading) or None


def _last_leaf(rows: list[Message]) -> int | None:
    return rows[-1].pk if rows else None


def _earliest(rows: list[Message]) -> datetime | None:
    return min((row.created_at for row in rows), default=None)


def _latest(rows: list[Message]) -> datetime | None:
    return max((row.created_at for row in rows), default=None)
