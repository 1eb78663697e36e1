"""Titles written by the model: one short side request after a conversation's first reply.

Until it answers (and whenever it fails or is slow) the title is the question's first words. The
request is claimed atomically (``question`` → ``requested``), so a conversation gets at most one,
whichever worker ends its reply; the answer is stored only while the claim stands, so a rename
made meanwhile (``user``) wins. It runs beside the reply, after its ending is recorded and shown,
so it can neither delay nor change it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re

from channels.db import database_sync_to_async
from django.conf import settings

from chat import events, providers
from chat.models import Conversation, Message
from chat.storable import storable
from chat.upstream import ChatRequest, complete_chat

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
QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"
DASHES = "-\u2013\u2014"

_pending: set[asyncio.Task[None]] = set()


def clean_title(text: str) -> str:
    """The title in a model's answer: no reasoning, quotes, label, Markdown or trailing stop.

    At most ``MAX_WORDS`` words; empty when nothing usable is left.
    """
    text = re.sub(r"<think>.*?(</think>|$)", " ", storable(text), flags=re.DOTALL | re.IGNORECASE)
    lines = [line for line in (raw.strip() for raw in text.splitlines()) if line]
    line = lines[0] if lines else ""
    line = re.sub(r"^(?:#+\s*|\*+|_+)", "", line)
    line = re.sub(r"^(?:conversation\s+)?title\s*[:\-\u2013\u2014]\s*", "", line, flags=re.IGNORECASE)
    line = line.replace("**", "").replace("__", "").replace("`", "")
    line = line.strip().strip(QUOTES + "*_ ").strip()
    words = line.split()[:MAX_WORDS]
    title = " ".join(words).rstrip(".!?,;:\u2026 " + DASHES).strip(QUOTES + " ")
    limit = Conversation._meta.get_field("title").max_length
    return title[:limit].strip()


def maybe_start(reply: Message) -> None:
    """After a reply ends: ask for the conversation's title if it still has none from the model."""
    if not settings.CHAT_MODEL_TITLES or reply.status != Message.Status.COMPLETE or not reply.content.strip():
        return
    task = asyncio.get_running_loop().create_task(
        _title(reply.pk), name=f"title-{reply.conversation_id}", context=contextvars.Context()
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def wait_all() -> None:
    """Wait for the title requests under way in this process (tests)."""
    if _pending:
        await asyncio.wait(list(_pending))


async def _title(reply_id: int) -> None:
    try:
        claimed = await database_sync_to_async(_claim)(reply_id)
        if claimed is None:
            return
        conversation_id, endpoint, request = claimed
        answer = await complete_chat(endpoint, request, seconds=settings.CHAT_TITLE_TIMEOUT)
        title = clean_title(answer)
        if not title:
            logger.info(
                "Conversation %s: the model's title was empty; keeping its first words", conversation_id
            )
            return
        if await database_sync_to_async(_store)(conversation_id, title):
            await events.publish_title(conversation_id)
    except Exception as exc:  # a title is a nicety: the first words stay
        logger.info("Reply %s: no title from the model (%s)", reply_id, exc)


def _claim(reply_id: int) -> tuple[object, object, ChatRequest] | None:
    """Claim the conversation's one title request; None when it was made, renamed or imported."""
    reply = Message.objects.select_related("conversation", "parent").get(pk=reply_id)
    conversation = reply.conversation
    claimed = Conversation.objects.filter(
        pk=conversation.pk, title_source=Conversation.TitleSource.QUESTION
    ).update(title_source=Conversation.TitleSource.REQUESTED)
    if not claimed:
        return None
    question = reply.parent.content if reply.parent is not None else ""
    request = ChatRequest(
        model=reply.model or conversation.model,
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
    return conversation.pk, providers.endpoint_for(reply.provider_id), request


def _store(conversation_id: object, title: str) -> bool:
    """Store the model's title unless the user renamed the conversation meanwhile."""
    stored = Conversation.objects.filter(
        pk=conversation_id, title_source=Conversation.TitleSource.REQUESTED
    ).update(title=title, title_source=Conversation.TitleSource.MODEL)
    return bool(stored)
