"""Conversations as files: readable Markdown of the branch on screen, and JSON of everything.

The JSON keeps all of a conversation (every version of every message, reasoning, model, usage,
timings, status, the conversation's settings and which branch is shown) so that nothing is lost
when it leaves. A file is always a JSON list of conversations, one or all of a user's, so any
export file can be imported as it is. "Export all" is written conversation by conversation
(``export_all_async``): a user with thousands of conversations never has them in memory at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser

from chat import selectors
from chat.importers.native import FORMAT  # marks this product's records, for its importer
from chat.models import Conversation, Message

_MESSAGE_FIELDS = (
    "role",
    "content",
    "reasoning",
    "model",
    "status",
    "finish_reason",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "first_token_ms",
    "duration_ms",
)
_ROLE_HEADINGS = {Message.Role.USER: "User", Message.Role.ASSISTANT: "Assistant"}


def conversation_record(conversation: Conversation) -> dict[str, Any]:
    """Everything about ``conversation``, as one JSON-ready record."""
    messages = conversation.messages.order_by("id")
    return {
        "format": FORMAT,
        "id": str(conversation.pk),
        "title": conversation.title,
        "created_at": _time(conversation.created_at),
        "updated_at": _time(conversation.updated_at),
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "temperature": conversation.temperature,
        "max_tokens": conversation.max_tokens,
        "current_message": conversation.current_leaf_id,
        "messages": [
            {
                "id": message.pk,
                "parent": message.parent_id,
                **{field: getattr(message, field) for field in _MESSAGE_FIELDS},
                "created_at": _time(message.created_at),
            }
            for message in messages
        ],
    }


def conversation_json(conversation: Conversation) -> str:
    return json.dumps([conversation_record(conversation)], ensure_ascii=False, indent=1)


async def export_all_async(user: AbstractBaseUser) -> AsyncIterator[str]:
    """``user``'s conversations as one JSON list, one conversation per chunk, newest first.

    Asynchronous, so that the server sends each chunk as it is made (Django would read a
    synchronous iterator to its end before sending anything under ASGI).
    """
    ids = await database_sync_to_async(_conversation_ids)(user)
    yield "["
    for number, conversation_id in enumerate(ids):
        record = await database_sync_to_async(_record)(conversation_id)
        yield ("," if number else "") + "\n" + json.dumps(record, ensure_ascii=False)
    yield "\n]\n"


def _conversation_ids(user: AbstractBaseUser) -> list[Any]:
    return list(Conversation.objects.filter(owner=user).order_by("-updated_at").values_list("pk", flat=True))


def _record(conversation_id: Any) -> dict[str, Any]:
    return conversation_record(Conversation.objects.get(pk=conversation_id))


def conversation_markdown(conversation: Conversation) -> str:
    """The branch on screen as a readable document: a heading per message, the text as written."""
    lines = [f"# {conversation}", ""]
    if prompt := selectors.system_prompt(conversation):
        lines += ["## System prompt", "", prompt, ""]
    for message in selectors.conversation_messages(conversation=conversation):
        heading = _ROLE_HEADINGS.get(message.role, message.role)
        if message.role == Message.Role.ASSISTANT and message.model:
            heading += f" ({message.model})"
        lines += [f"## {heading}", ""]
        if message.reasoning:
            lines += ["<details><summary>Thinking</summary>", "", message.reasoning, "", "</details>", ""]
        lines += [message.content, ""]
        if message.status not in (Message.Status.COMPLETE, Message.Status.STREAMING):
            lines += [f"*({message.get_status_display()})*", ""]
    return "\n".join(lines)


def filename(conversation: Conversation, extension: str) -> str:
    """A download name from the title: letters, digits and hyphens only (safe in any header)."""
    stem = "".join(c if c.isascii() and c.isalnum() else "-" for c in str(conversation).lower())
    stem = "-".join(part for part in stem.split("-") if part)[:60] or "conversation"
    return f"{stem}.{extension}"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
