"""One record of Open WebUI's "Export chats" file, as a neutral conversation.

A record holds ``chat.history``: ``messages`` (id -> message with ``parentId`` and ``childrenIds``)
and ``currentId``, the message on screen. Times are Unix seconds. An assistant message's reasoning
is in ``output`` items of type ``reasoning`` (0.6 and later, as in the 0.12.4 sample) or, from
older versions, in ``<details type="reasoning">`` blocks at the start of ``content``; either way it
goes to ``reasoning`` and ``content`` keeps the answer only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chat.importers.tree import (
    ImportedConversation,
    ImportedMessage,
    ImportFormatError,
    SourceNode,
    child_keys,
    conversation,
    conversation_label,
    utc_from_seconds,
)

SOURCE = "open-webui"
_KEPT_ROLES = frozenset({"user", "assistant", "system"})
# Open WebUI writes: <details type="reasoning" done="true" duration="3">\n<summary>Thought for 3
# seconds</summary>\n> line\n> line\n</details>\n
_REASONING_BLOCK = re.compile(
    r'<details\s+type="reasoning"[^>]*>\s*(?:<summary>.*?</summary>)?(?P<quoted>.*?)</details>\s*', re.DOTALL
)


def is_record(record: Mapping[str, Any]) -> bool:
    """Whether a record looks like Open WebUI's (``conversation_from_record`` checks the rest)."""
    return "chat" in record


def conversation_from_record(record: Mapping[str, Any], *, number: int) -> ImportedConversation:
    """The conversation in one record; ``number`` is its place in the file (from 1), for errors."""
    chat = record.get("chat")
    title = _title(record, chat, number)
    label = conversation_label(number, title)
    history = chat.get("history") if isinstance(chat, dict) else None
    raw_messages = history.get("messages") if isinstance(history, dict) else None
    if not isinstance(raw_messages, dict):
        raise ImportFormatError(f"{label} is incomplete: its message history is missing.")
    nodes = {key: _node(key, raw, label) for key, raw in raw_messages.items()}
    return conversation(
        nodes,
        current_key=history.get("currentId"),
        title=title,
        created_at=record.get("created_at"),
        updated_at=record.get("updated_at"),
        label=label,
        source=SOURCE,
    )


def _title(record: Mapping[str, Any], chat: object, number: int) -> str:
    title = record.get("title")
    if title is None and isinstance(chat, dict):
        title = chat.get("title")
    if title is None:
        return ""
    if not isinstance(title, str):
        raise ImportFormatError(f"Conversation {number} has a title that is not text.")
    return title


def _node(key: str, raw: object, label: str) -> SourceNode:
    if not isinstance(raw, dict):
        raise ImportFormatError(f"{label} has a message that is not in Open WebUI's form.")
    parent_key = raw.get("parentId")
    if parent_key is not None and not isinstance(parent_key, str):
        raise ImportFormatError(f"{label} has a message whose parent is not a message id.")
    children_keys = child_keys(raw.get("childrenIds"))
    return SourceNode(parent_key=parent_key, children_keys=children_keys, message=_message(key, raw, label))


def _message(key: str, raw: Mapping[str, Any], label: str) -> ImportedMessage | None:
    role = raw.get("role")
    if not isinstance(role, str):
        raise ImportFormatError(f"{label} has a message without a role (user or assistant).")
    content = raw.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise ImportFormatError(f"{label} has a message whose content is not text.")
    if role not in _KEPT_ROLES:
        return None
    reasoning = ""
    if role == "assistant":
        output = raw.get("output") if isinstance(raw.get("output"), list) else []
        content, reasoning = _split_reasoning(content)
        content = content or _output_text(output, "message")
        reasoning = _output_text(output, "reasoning") or reasoning
    model = raw.get("model")
    return ImportedMessage(
        key=key,
        parent_key=None,
        role=role,
        content=content,
        reasoning=reasoning,
        model=model if isinstance(model, str) else "",
        created_at=utc_from_seconds(raw.get("timestamp"), label=label),
    )


def _split_reasoning(content: str) -> tuple[str, str]:
    """``content`` without its reasoning blocks, and their text with Open WebUI's ``> `` quoting undone."""
    blocks = [match["quoted"] for match in _REASONING_BLOCK.finditer(content)]
    if not blocks:
        return content, ""
    reasoning = "\n\n".join(_unquoted(block).strip() for block in blocks)
    return _REASONING_BLOCK.sub("", content).strip(), reasoning


def _unquoted(block: str) -> str:
    lines = (line[2:] if line.startswith("> ") else line.removeprefix(">") for line in block.splitlines())
    return "\n".join(lines)


def _output_text(output: list[Any], item_type: str) -> str:
    """The text of the ``output`` items of one type: pieces of an item joined, items as paragraphs."""
    texts = []
    for item in output:
        if not isinstance(item, dict) or item.get("type") != item_type:
            continue
        pieces = item.get("content") or item.get("summary") or []
        if isinstance(pieces, list):
            text = "".join(
                p["text"] for p in pieces if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
            if text.strip():
                texts.append(text.strip())
    return "\n\n".join(texts)
