"""One record of ChatGPT's ``conversations.json``, as a neutral conversation.

A record's ``mapping`` holds every node (id -> ``message``, ``parent``, ``children``) and
``current_node`` the one on screen. Much of the tree is machinery the product never shows: a root
with no message, hidden system prompts, tool calls' results. Those nodes are left out and their
children hang from the nearest kept ancestor, so the imported conversation reads the way it did in
ChatGPT:

- ``text`` and ``multimodal_text``: the parts, each a paragraph (joined with a blank line, as the
  product shows them one under the other); an image is the marker ``[image]``; a part carrying
  ``text`` (a voice message's transcript) gives that text; other attachments are skipped;
- ``code`` (the code interpreter's input): a fenced Markdown block, tagged with its language when
  the export names one;
- ``execution_output``, any message from the ``tool`` author, messages marked
  ``is_visually_hidden_from_conversation``, and system messages with no text: left out;
- any other content type: its string parts, or left out when it has none (such as custom
  instructions, which ChatGPT shows in settings, not in the conversation).
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

SOURCE = "chatgpt"
IMAGE_MARKER = "[image]"
_KEPT_ROLES = frozenset({"user", "assistant", "system"})
_UNNAMED_LANGUAGES = frozenset({"", "unknown"})
_BACKTICK_RUN = re.compile(r"`{3,}")


def is_record(record: Mapping[str, Any]) -> bool:
    """Whether a record looks like ChatGPT's (``conversation_from_record`` checks the rest)."""
    return "mapping" in record


def conversation_from_record(record: Mapping[str, Any], *, number: int) -> ImportedConversation:
    """The conversation in one record; ``number`` is its place in the file (from 1), for errors."""
    title = record.get("title")
    if title is not None and not isinstance(title, str):
        raise ImportFormatError(f"Conversation {number} has a title that is not text.")
    title = title or ""
    label = conversation_label(number, title)
    mapping = record.get("mapping")
    if not isinstance(mapping, dict):
        raise ImportFormatError(f"{label} is incomplete: its message tree is missing.")
    nodes = {key: _node(key, raw, label) for key, raw in mapping.items()}
    return conversation(
        nodes,
        current_key=record.get("current_node"),
        title=title,
        created_at=record.get("create_time"),
        updated_at=record.get("update_time"),
        label=label,
        source=SOURCE,
    )


def _node(key: str, raw: object, label: str) -> SourceNode:
    if not isinstance(raw, dict):
        raise ImportFormatError(f"{label} has a message that is not in ChatGPT's form.")
    parent_key = raw.get("parent")
    if parent_key is not None and not isinstance(parent_key, str):
        raise ImportFormatError(f"{label} has a message whose parent is not a message id.")
    children_keys = child_keys(raw.get("children"))
    return SourceNode(
        parent_key=parent_key, children_keys=children_keys, message=_message(key, raw.get("message"), label)
    )


def _message(key: str, raw: object, label: str) -> ImportedMessage | None:
    """The message a node shows, or None when ChatGPT does not show one there."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ImportFormatError(f"{label} has a message that is not in ChatGPT's form.")
    author = raw.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    if not isinstance(role, str):
        raise ImportFormatError(f"{label} has a message without an author.")
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    if role not in _KEPT_ROLES or metadata.get("is_visually_hidden_from_conversation"):
        return None
    content = _shown_text(raw.get("content"), label)
    if content is None or (role == "system" and not content.strip()):
        return None
    model = metadata.get("model_slug")
    return ImportedMessage(
        key=key,
        parent_key=None,
        role=role,
        content=content,
        model=model if isinstance(model, str) else "",
        created_at=utc_from_seconds(raw.get("create_time"), label=label),
    )


def _shown_text(content: object, label: str) -> str | None:
    if not isinstance(content, dict):
        raise ImportFormatError(f"{label} has a message without content.")
    content_type = content.get("content_type")
    parts = content.get("parts")
    if content_type in ("text", "multimodal_text"):
        if not isinstance(parts, list):
            raise ImportFormatError(f"{label} has a message whose text is missing.")
        return "\n\n".join(_shown_parts(parts, label))
    if content_type == "code":
        code = content.get("text")
        if not isinstance(code, str):
            raise ImportFormatError(f"{label} has a code message whose code is not text.")
        language = content.get("language")
        return _fenced(code, language if isinstance(language, str) else "")
    if content_type == "execution_output":
        return None
    strings = [part for part in parts if isinstance(part, str) and part] if isinstance(parts, list) else []
    return "\n\n".join(strings) or None


def _shown_parts(parts: list[Any], label: str) -> list[str]:
    shown = []
    for part in parts:
        if isinstance(part, str):
            if part:
                shown.append(part)
        elif isinstance(part, dict):
            content_type = part.get("content_type")
            if isinstance(content_type, str) and "image" in content_type:
                shown.append(IMAGE_MARKER)
            elif isinstance(part.get("text"), str) and part["text"]:
                shown.append(part["text"])
        elif part is not None:
            raise ImportFormatError(f"{label} has a message with a part that is not text.")
    return shown


def _fenced(code: str, language: str) -> str:
    """``code`` as a Markdown code block whose fence no run of backticks inside it can close."""
    longest_run = max((len(run) for run in _BACKTICK_RUN.findall(code)), default=0)
    fence = "`" * max(3, longest_run + 1)
    tag = "" if language.strip().lower() in _UNNAMED_LANGUAGES else language.strip()
    return f"{fence}{tag}\n{code}\n{fence}"
