"""This product's own JSON export (``chat.exporting``) read back: a lossless round trip.

Everything the export holds comes back: every version, reasoning, models, status, finish reason,
usage, timings, the conversation's settings and the branch that was shown. A reply exported while
it was still being written comes back as ``interrupted``: no worker is writing it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chat.importers.tree import (
    ImportedConversation,
    ImportedMessage,
    ImportFormatError,
    SourceNode,
    conversation,
    conversation_label,
    utc_from_seconds,
)

SOURCE = "chat"
FORMAT = "chat-export/1"
_ROLES = frozenset({"user", "assistant"})
_STATUSES = {"complete": "complete", "stopped": "stopped", "error": "error", "interrupted": "interrupted"}
_STATUSES["streaming"] = "interrupted"
_TEXTS = ("content", "reasoning", "model")
_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens", "first_token_ms", "duration_ms")


def is_record(record: Mapping[str, Any]) -> bool:
    return record.get("format") == FORMAT


def conversation_from_record(record: Mapping[str, Any], *, number: int) -> ImportedConversation:
    """The conversation in one record; ``number`` is its place in the file (from 1), for errors."""
    title = record.get("title")
    if not isinstance(title, str):
        raise ImportFormatError(f"Conversation {number} has a title that is not text.")
    label = conversation_label(number, title)
    raw_messages = record.get("messages")
    if not isinstance(raw_messages, list):
        raise ImportFormatError(f"{label} is incomplete: its messages are missing.")
    messages = [_message(raw, label) for raw in raw_messages]
    children: dict[str | None, list[str]] = {}
    for message in messages:
        children.setdefault(message.parent_key, []).append(message.key)
    nodes = {m.key: SourceNode(m.parent_key, tuple(children.get(m.key, ())), m) for m in messages}
    current = record.get("current_message")
    return conversation(
        nodes,
        current_key=str(current) if isinstance(current, int) and not isinstance(current, bool) else None,
        title=title,
        created_at=record.get("created_at"),
        updated_at=record.get("updated_at"),
        label=label,
        source=SOURCE,
        settings=_settings(record, label),
    )


def _message(raw: object, label: str) -> ImportedMessage:
    if not isinstance(raw, dict) or not _is_id(raw.get("id")):
        raise ImportFormatError(f"{label} has a message without a numeric id.")
    parent = raw.get("parent")
    if parent is not None and not _is_id(parent):
        raise ImportFormatError(f"{label} has a message whose parent is not a message id.")
    if raw.get("role") not in _ROLES:
        raise ImportFormatError(f"{label} has a message whose role is neither user nor assistant.")
    texts = {name: raw.get(name) or "" for name in _TEXTS}
    if not all(isinstance(value, str) for value in texts.values()):
        raise ImportFormatError(f"{label} has a message whose text is not text.")
    status = _STATUSES.get(raw.get("status") or "complete")
    if status is None:
        raise ImportFormatError(f"{label} has a message with an unknown status.")
    details: dict[str, Any] = {"status": status}
    for name in ("finish_reason", "error"):
        value = raw.get(name) or ""
        if not isinstance(value, str):
            raise ImportFormatError(f"{label} has a message whose {name.replace('_', ' ')} is not text.")
        details[name] = value
    for name in _COUNTS:
        value = raw.get(name)
        if value is not None and (not _is_id(value) or value < 0):
            raise ImportFormatError(f"{label} has a message whose {name.replace('_', ' ')} is not a count.")
        details[name] = value
    return ImportedMessage(
        key=str(raw["id"]),
        parent_key=str(parent) if parent is not None else None,
        role=raw["role"],
        content=texts["content"],
        reasoning=texts["reasoning"],
        model=texts["model"],
        created_at=utc_from_seconds(raw.get("created_at"), label=label),
        details=details,
    )


def _settings(record: Mapping[str, Any], label: str) -> dict[str, Any]:
    prompt, temperature, max_tokens = (record.get(k) for k in ("system_prompt", "temperature", "max_tokens"))
    if prompt is not None and not isinstance(prompt, str):
        raise ImportFormatError(f"{label} has a system prompt that is not text.")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float | None):
        raise ImportFormatError(f"{label} has a temperature that is not a number.")
    if max_tokens is not None and (not _is_id(max_tokens) or max_tokens < 1):
        raise ImportFormatError(f"{label} has a reply length that is not a count.")
    model = record.get("model")
    if not isinstance(model, str | None):
        raise ImportFormatError(f"{label} has a model that is not text.")
    return {"system_prompt": prompt, "temperature": temperature, "max_tokens": max_tokens, "model": model}


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
