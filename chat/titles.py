"""Titles written by the model: one short side request after a conversation's first reply.

Until it answers (and whenever it fails or is slow) the title is the question's first words. The
request is claimed atomically (``question`` → ``requested``), so a conversation gets at most one,
whichever worker ends its reply; the answer is stored only while the claim stands, so a rename
made meanwhile (``user``) wins. It runs beside the reply, after its ending is recorded and shown,
so it can neither delay nor change it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

from chat import events, providers, search
from chat.models import Conversation, Message
from chat.storable import storable
from chat.upstream import ChatRequest, Endpoint, complete_chat

logger = logging.getLogger(__name__)

MAX_WORDS = 6
QUESTION_CHARS = 1000
ANSWER_CHARS = 1000
# Room for a short title, and for the reasoning some models write before any answer.
TITLE_MAX_TOKENS = 400
INSTRUCTION = (
    "Write a title of at most six words for the conversation below. "
    "Answer with the title only: no quotes, no punctuation at the end."
)

# Quotes and dashes a model may wrap a title in or end it with (written as escapes: they look alike).
QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"
DASHES = "-\u2013\u2014"

_REASONING = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|\Z)", re.DOTALL | re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LEADING_MARKUP = re.compile(r"^(?:#+\s*|>\s*|[-*+]\s+|\d+[.)]\s+)+")
_LABEL = re.compile(r"^\W*(?:conversation\s+|suggested\s+)?title\W*?[:\-\u2013\u2014]\s*", re.IGNORECASE)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
# Emphasis marks at a word's edge (``*Python* lists``), not inside one (``snake_case``).
_EMPHASIS = re.compile(r"(?<!\w)[*_~]+|[*_~]+(?!\w)")

_pending: set[asyncio.Task[None]] = set()


def clean_title(text: str) -> str:
    """The title in a model's answer: no reasoning, quotes, label, Markdown or trailing stop.

    The first line with words left, at most ``MAX_WORDS`` of them, within the field's length;
    empty when nothing usable is left (the question's first words then stay).
    """
    text = _REASONING.sub("\n", storable(text))
    for raw in text.splitlines():
        if title := _clean_line(raw):
            return title
    return ""


def _clean_line(line: str) -> str:
    line = _CONTROL.sub(" ", line).strip()
    line = _LEADING_MARKUP.sub("", line)
    line = _LINK.sub(r"\1", line)
    line = _EMPHASIS.sub("", line.replace("`", ""))
    line = _LABEL.sub("", line)
    line = line.strip().strip(QUOTES + " ").strip()
    words = line.split()[:MAX_WORDS]
    title = " ".join(words).rstrip(".!?,;:\u2026 " + DASHES).strip(QUOTES + " ")
    limit = Conversation._meta.get_field("title").max_length
    return title[:limit].strip()


def maybe_start(reply: Message) -> None:
    """After a reply ends: ask for the conversation's title if it still has none from the model.

    Never raises and never waits: the request runs as a task of its own, kept in ``_pending``.
    """
    if not settings.CHAT_MODEL_TITLES or reply.status != Message.Status.COMPLETE or not reply.content.strip():
        return
    task = asyncio.get_running_loop().create_task(
        _title(reply.pk, reply.conversation_id),
        name=f"title-{reply.conversation_id}",
        context=contextvars.Context(),  # it outlives whoever ended the reply
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def wait_all() -> None:
    """Wait for the title requests under way in this process (tests)."""
    if _pending:
        await asyncio.wait(list(_pending))


async def cancel_all() -> None:
    """Give up the title requests under way (shutdown): those conversations keep their first words."""
    tasks = list(_pending)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks, return_exceptions=True)


def _in_worker_thread[**P, T](func: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    # Off the one thread that page requests share, as replies' own writes are.
    return database_sync_to_async(func, thread_sensitive=False)


async def _title(reply_id: int, conversation_id: uuid.UUID) -> None:
    try:
        claimed = await _in_worker_thread(_claim)(reply_id, conversation_id)
        if claimed is None:
            return
        endpoint, request = claimed
        answer = await complete_chat(endpoint, request, seconds=settings.CHAT_TITLE_TIMEOUT)
        title = clean_title(answer)
        if not title:
            logger.info(
                "Conversation %s: the model's title was empty; keeping its first words", conversation_id
            )
            return
        if await _in_worker_thread(_store)(conversation_id, title):
            await events.publish_title(conversation_id)
    except Exception as exc:  # a title is a nicety: the first words stay
        logger.info("Conversation %s: no title from the model (%s)", conversation_id, exc)


def _claim(reply_id: int, conversation_id: uuid.UUID) -> tuple[Endpoint, ChatRequest] | None:
    """Claim the conversation's one title request; None when it was made, renamed or imported."""
    waiting = Conversation.objects.filter(pk=conversation_id, title_source=Conversation.TitleSource.QUESTION)
    # Every later reply ends here: one read, no write.
    if not waiting.exists() or not waiting.update(title_source=Conversation.TitleSource.REQUESTED):
        return None
    reply = Message.objects.select_related("conversation", "parent").get(pk=reply_id)
    question = reply.parent.content if reply.parent is not None else ""
    request = ChatRequest(
        model=reply.model or reply.conversation.model,
        messages=[
            {"role": "system", "content": INSTRUCTION},
            {
                "role": "user",
                "content": f"Question: {question[:QUESTION_CHARS]}\n\nAnswer: {reply.content[:ANSWER_CHARS]}",
            },
        ],
        temperature=0.2,
        max_tokens=TITLE_MAX_TOKENS,
    )
    return providers.endpoint_for(reply.provider_id), request


def _store(conversation_id: uuid.UUID, title: str) -> bool:
    """Store the model's title unless the user renamed the conversation meanwhile."""
    stored = Conversation.objects.filter(
        pk=conversation_id, title_source=Conversation.TitleSource.REQUESTED
    ).update(title=title, title_source=Conversation.TitleSource.MODEL)
    if stored:
        search.index_title([conversation_id])
    return bool(stored)
