"""Full-text search over a user's own conversations: titles and message text, through an index.

SQLite (the embedded default) keeps two FTS5 tables; PostgreSQL keeps a ``tsvector`` column on each
message with a GIN index, and an expression GIN index on titles (migration ``0005_search``). In
both, a message's index entry carries its owner as a token (``u<user id>``), so the index itself
narrows a search to one user's messages instead of filtering every match afterwards.

The index is written by the write paths, not by triggers on every update: a user's message when it
is stored, a reply when it ends (never per checkpoint), a title when it changes, an import in bulk.
Deleting removes entries (SQLite: triggers on delete; PostgreSQL: they live on the rows).
Words are matched whole, the last one also as a prefix (results follow the typing), all of them
required; no stemming, so any language searches the same way. Newest messages come first.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from chat.models import Conversation, Message

MAX_TERMS = 8
SNIPPET_CHARS = 160
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Hit:
    conversation_id: uuid.UUID
    title: str
    message_id: int | None  # None: the title matched
    role: str
    snippet: SafeString  # escaped text with the matched words in <mark>

    @property
    def url(self) -> str:
        base = f"/c/{self.conversation_id}/"
        return f"{base}?m={self.message_id}#m-{self.message_id}" if self.message_id else base


def terms(query: str) -> list[str]:
    """The words of a query, lower-cased, at most ``MAX_TERMS``; punctuation and syntax are dropped."""
    return [word.lower() for word in _WORD.findall(query or "")][:MAX_TERMS]


def _owner_token(user_id: int) -> str:
    return f"u{user_id}"


# --- Writing the index ---------------------------------------------------------------------------


def index_messages(message_ids: Iterable[int]) -> None:
    """Index these messages' text as stored now: new user messages, ended replies, imports.

    Each message is indexed once, when its text is final (a reply's never changes after its
    ending), so this only adds entries (one statement per 500 messages); one already indexed is
    left as it is.
    """
    ids = list(message_ids)
    if not ids:
        return
    with connection.cursor() as cursor:
        for chunk, marks in _chunks(ids):
            if connection.vendor == "postgresql":
                cursor.execute(
                    "UPDATE chat_message AS m SET search_vector = "
                    "to_tsvector('simple', 'u' || c.owner_id) || to_tsvector('simple', m.content) "
                    f"FROM chat_conversation AS c WHERE c.id = m.conversation_id AND m.id IN ({marks})",
                    chunk,
                )
            else:
                cursor.execute(
                    "INSERT INTO chat_message_fts (rowid, owner, body) "
                    "SELECT m.id, 'u' || c.owner_id, m.content FROM chat_message AS m "
                    f"JOIN chat_conversation AS c ON c.id = m.conversation_id WHERE m.id IN ({marks}) "
                    f"AND m.id NOT IN (SELECT rowid FROM chat_message_fts WHERE rowid IN ({marks}))",
                    chunk + chunk,
                )


def _chunks(items: list, size: int = 500) -> Iterator[tuple[list, str]]:
    """``items`` in statements' worth, each with its ``%s`` placeholders."""
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        yield chunk, ",".join(["%s"] * len(chunk))


def index_title(conversation_ids: Iterable[uuid.UUID]) -> None:
    """(Re)index these conversations' titles (PostgreSQL indexes them by expression: nothing to do)."""
    if connection.vendor == "postgresql":
        return
    keys = [key.hex if isinstance(key, uuid.UUID) else uuid.UUID(str(key)).hex for key in conversation_ids]
    if not keys:
        return
    with connection.cursor() as cursor:
        for chunk, marks in _chunks(keys):
            cursor.execute(f"DELETE FROM chat_title_fts WHERE conversation_id IN ({marks})", chunk)
            cursor.execute(
                "INSERT INTO chat_title_fts (conversation_id, owner, title) "
                f"SELECT id, 'u' || owner_id, title FROM chat_conversation WHERE id IN ({marks})",
                chunk,
            )


# --- Searching -----------------------------------------------------------------------------------


def search(*, user: AbstractBaseUser, query: str, limit: int = 20) -> list[Hit]:
    """The user's conversations whose title or messages hold every word of ``query``.

    Title matches first (one per conversation), then messages, newest first.
    """
    words = terms(query)
    if not words or not user.is_authenticated:
        return []
    if connection.vendor == "postgresql":
        title_ids, message_ids = _postgres(user.pk, words, limit)
    else:
        title_ids, message_ids = _sqlite(user.pk, words, limit)
    titles = Conversation.objects.filter(owner=user, pk__in=title_ids).only("id", "title")
    hits = [
        Hit(c.pk, str(c), None, "", highlight(str(c), words))
        for c in sorted(titles, key=lambda c: title_ids.index(c.pk))
    ]
    messages = Message.objects.filter(pk__in=message_ids, conversation__owner=user).select_related(
        "conversation"
    )
    for message in sorted(messages, key=lambda m: -m.pk):
        hits.append(
            Hit(
                message.conversation_id,
                str(message.conversation),
                message.pk,
                message.role,
                highlight(message.content, words),
            )
        )
    return hits[:limit]


def _fts5_terms(words: list[str]) -> str:
    """Every word, quoted (no FTS5 syntax gets through), the last also as a prefix."""
    quoted = [f'"{word}"' for word in words]
    quoted[-1] += "*"
    return " AND ".join(quoted)


def _fts5_query(user_id: int, words: list[str], column: str) -> str:
    return f"owner : {_owner_token(user_id)} AND {column} : ({_fts5_terms(words)})"


def _sqlite(user_id: int, words: list[str], limit: int) -> tuple[list[uuid.UUID], list[int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conversation_id FROM chat_title_fts WHERE chat_title_fts MATCH %s LIMIT %s",
            [_fts5_query(user_id, words, "title"), limit],
        )
        title_ids = [uuid.UUID(row[0]) for row in cursor.fetchall()]
        cursor.execute(
            "SELECT rowid FROM chat_message_fts WHERE chat_message_fts MATCH %s ORDER BY rowid DESC LIMIT %s",
            [_fts5_query(user_id, words, "body"), limit],
        )
        message_ids = [row[0] for row in cursor.fetchall()]
    return title_ids, message_ids


def _tsquery(words: list[str]) -> str:
    parts = [f"'{word}'" for word in words]
    parts[-1] += ":*"
    return " & ".join(parts)


# A GIN index cannot return rows newest first, and the planner guesses how many rows a text
# query matches (badly for words it has no statistics on, and for prefixes). Guessing "many", it
# walks the primary key backwards testing every row: a word nobody wrote then reads the whole
# table (180 ms at 100,000 messages). Guessing "few", it reads every match and sorts: the most
# common word then reads 100,000 rows. So the plan is fixed here: test the newest ``_RECENT``
# messages (a bounded walk, enough for any common word), and only if they hold too few matches
# ask the GIN index for the older ones (cheap then: such words are rare).
_RECENT = 20_000


def _postgres(user_id: int, words: list[str], limit: int) -> tuple[list[uuid.UUID], list[int]]:
    query = _tsquery(words)
    matches = "search_vector @@ (to_tsquery('simple', %s) && to_tsquery('simple', %s))"
    params = [_owner_token(user_id), query]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM chat_conversation WHERE owner_id = %s "
            "AND to_tsvector('simple', title) @@ to_tsquery('simple', %s) ORDER BY updated_at DESC LIMIT %s",
            [user_id, query, limit],
        )
        title_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT max(id) FROM chat_message")
        oldest = (cursor.fetchone()[0] or 0) - _RECENT  # ids above it: at most _RECENT rows
        cursor.execute(
            "SELECT id FROM (SELECT id, search_vector FROM chat_message WHERE id > %s "
            f"ORDER BY id DESC LIMIT %s) AS recent WHERE {matches} ORDER BY id DESC LIMIT %s",
            [oldest, _RECENT, *params, limit],
        )
        message_ids = [row[0] for row in cursor.fetchall()]
        if len(message_ids) < limit and oldest > 0:
            with transaction.atomic():
                try:  # the GIN index only: never a walk through every row
                    cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
                    cursor.execute(
                        f"SELECT id FROM chat_message WHERE {matches} AND id <= %s ORDER BY id DESC LIMIT %s",
                        [*params, oldest, limit - len(message_ids)],
                    )
                    message_ids += [row[0] for row in cursor.fetchall()]
                finally:  # SET LOCAL lasts until the outermost transaction ends
                    cursor.execute("RESET enable_seqscan; RESET enable_indexscan")
    return title_ids, message_ids


def matching_messages_sql(query: str) -> tuple[str, list[str]] | None:
    """SQL selecting the ids of every message holding the words of ``query``, whoever owns it.

    For the admin's searches (a subquery, so no id list is built in Python); None without words.
    """
    words = terms(query)
    if not words:
        return None
    if connection.vendor == "postgresql":
        return "SELECT id FROM chat_message WHERE search_vector @@ to_tsquery('simple', %s)", [
            _tsquery(words)
        ]
    return (
        "SELECT rowid FROM chat_message_fts WHERE chat_message_fts MATCH %s",
        [f"body : ({_fts5_terms(words)})"],
    )


# --- Snippets ------------------------------------------------------------------------------------


def _pattern(words: list[str]) -> re.Pattern[str]:
    """The query's words as they match in text: whole words, the last one also as a prefix."""
    alternatives = [rf"\b{re.escape(word)}\b" for word in words[:-1]]
    alternatives.append(rf"\b{re.escape(words[-1])}\w*")
    return re.compile("|".join(alternatives), re.IGNORECASE)


def highlight(text: str, words: list[str]) -> SafeString:
    """A short excerpt of ``text`` around its first match, escaped, the matched words in ``<mark>``."""
    flat = " ".join(text.split())
    pattern = _pattern(words) if words else None
    first = pattern.search(flat) if pattern else None
    start = 0
    if first is not None and first.start() > SNIPPET_CHARS // 3:
        start = flat.rfind(" ", 0, first.start() - SNIPPET_CHARS // 3) + 1  # from a word's start
    excerpt = flat[start : start + SNIPPET_CHARS]
    parts = ["…" if start else ""]
    position = 0
    for match in pattern.finditer(excerpt) if pattern else ():
        parts += [escape(excerpt[position : match.start()]), f"<mark>{escape(match.group())}</mark>"]
        position = match.end()
    parts += [escape(excerpt[position:]), "…" if start + SNIPPET_CHARS < len(flat) else ""]
    return mark_safe("".join(parts))  # every piece of text in it is escaped
