"""The neutral shape of an imported conversation, and the tree work every importer shares.

Chat products keep a conversation as a tree of messages: editing a message or regenerating a reply
starts a branch. Each importer turns its source's nodes into ``SourceNode``s; ``assemble`` then does
what all of them need: check the links, splice out the nodes an import leaves out, and put the kept
messages in an order a database can insert them in (every parent before its children).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

_LABEL_TITLE_LENGTH = 60
# No count of seconds reaches this before the year 5138, so a larger time is in milliseconds.
_MILLISECONDS_FROM = 100_000_000_000


class ImportFormatError(ValueError):
    """A file that cannot be imported; its message is one sentence for the person who chose the file."""


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    """One message as the source showed it; ``key`` is the source's id, unique within its conversation."""

    key: str
    parent_key: str | None
    role: str  # "user", "assistant" or "system"
    content: str  # the answer only, Markdown as the source showed it
    reasoning: str = ""
    model: str = ""
    created_at: datetime | None = None
    # Fields only this product's own export carries (status, finish reason, usage, timings), checked
    # by its reader and stored as they are.
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportedConversation:
    """A conversation ready to store: ``messages`` lists every parent before its children.

    ``current_key`` is the last message of the branch the source product was showing, so the import
    opens on the same branch; it is None only when no message was kept.
    """

    title: str
    created_at: datetime | None
    updated_at: datetime | None
    messages: tuple[ImportedMessage, ...]
    current_key: str | None
    source: str  # "open-webui", "chatgpt" or "chat" (this product's own export)
    settings: Mapping[str, Any] = field(default_factory=dict)  # system prompt and options, own exports only


@dataclass(frozen=True, slots=True)
class SourceNode:
    """A node of the source's tree; ``message`` is None for a node the import leaves out.

    The message's own ``parent_key`` is ignored: ``assemble`` sets it from the tree.
    """

    parent_key: str | None
    children_keys: tuple[str, ...]
    message: ImportedMessage | None


def children_by_parent(conversation: ImportedConversation) -> dict[str | None, tuple[str, ...]]:
    """Each message's replies in the source's order; the ``None`` entry holds the first messages."""
    return _children_of(conversation.messages)


def path_to(conversation: ImportedConversation, key: str) -> tuple[str, ...]:
    """The keys from the first message down to ``key``: the turns a reader sees with that message."""
    parents = {message.key: message.parent_key for message in conversation.messages}
    path = [key]
    while (parent := parents[path[-1]]) is not None:
        path.append(parent)
    return tuple(reversed(path))


def branch_count(conversation: ImportedConversation) -> int:
    """How many endings the conversation has: 1 when it is straight, more after edits or regenerations."""
    parents = {message.parent_key for message in conversation.messages}
    return sum(1 for message in conversation.messages if message.key not in parents)


def assemble(
    nodes: Mapping[str, SourceNode], *, current_key: str | None, label: str
) -> tuple[tuple[ImportedMessage, ...], str | None]:
    """The kept messages, parent-first, each re-pointed past left-out ancestors; and the current key.

    Parent links decide the tree; children lists only order siblings (a child its parent's list
    forgets comes after the listed ones, in the source's order). A current node that was left out
    gives way to its nearest kept ancestor; an absent or unknown one, to the newest branch.
    """
    for node in nodes.values():
        if node.parent_key is not None and node.parent_key not in nodes:
            raise ImportFormatError(f"{label} has a message whose parent is missing.")
    children = _ordered_children(nodes)
    # Every node visited, mapped to itself when kept, else to its nearest kept ancestor.
    shown_as: dict[str, str | None] = {}
    messages: list[ImportedMessage] = []
    # Depth first without recursion: a conversation may be thousands of messages deep.
    pending: list[tuple[str, str | None]] = [(key, None) for key in reversed(children.get(None, ()))]
    while pending:
        key, kept_ancestor = pending.pop()
        message = nodes[key].message
        if message is not None:
            messages.append(replace(message, parent_key=kept_ancestor))
            kept_ancestor = key
        shown_as[key] = kept_ancestor
        pending.extend((child, kept_ancestor) for child in reversed(children.get(key, ())))
    # With every parent present, only a loop of parent links keeps nodes out of reach of the roots.
    if len(shown_as) < len(nodes):
        raise ImportFormatError(f"{label} has messages whose parent links go round in a circle.")
    current = shown_as.get(current_key) if current_key is not None else None
    return tuple(messages), current if current is not None else _newest_ending(messages)


def conversation(
    nodes: Mapping[str, SourceNode],
    *,
    current_key: object,
    title: str,
    created_at: object,
    updated_at: object,
    label: str,
    source: str,
    settings: Mapping[str, Any] | None = None,
) -> ImportedConversation:
    """A format's parsed record as a conversation: its tree checked and ordered, its times read."""
    messages, current = assemble(
        nodes, current_key=current_key if isinstance(current_key, str) else None, label=label
    )
    return ImportedConversation(
        title=title,
        created_at=utc_from_seconds(created_at, label=label),
        updated_at=utc_from_seconds(updated_at, label=label),
        messages=messages,
        current_key=current,
        source=source,
        settings=settings or {},
    )


def child_keys(listed: object) -> tuple[str, ...]:
    """The ids in a source's children list; anything else is ignored, as the list only orders siblings."""
    return tuple(key for key in listed if isinstance(key, str)) if isinstance(listed, list) else ()


def conversation_label(number: int, title: str) -> str:
    """How an error names a conversation: its place in the file (from 1) and the start of its title."""
    title = " ".join(title.split())
    if len(title) > _LABEL_TITLE_LENGTH:
        title = title[: _LABEL_TITLE_LENGTH - 1] + "…"
    return f'Conversation {number} ("{title}")' if title else f"Conversation {number}"


def utc_from_seconds(value: object, *, label: str) -> datetime | None:
    """A source's Unix time (or ISO 8601 text) as an aware UTC datetime; some times are empty (None)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ImportFormatError(f"{label} has a date that is not a date.") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportFormatError(f"{label} has a date that is not a number.")
    if abs(value) >= _MILLISECONDS_FROM:
        value /= 1000
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ImportFormatError(f"{label} has a date that is out of range.") from None


def _ordered_children(nodes: Mapping[str, SourceNode]) -> dict[str | None, list[str]]:
    by_parent: dict[str | None, list[str]] = {}
    for key, node in nodes.items():
        by_parent.setdefault(node.parent_key, []).append(key)
    ordered: dict[str | None, list[str]] = {}
    for parent, keys in by_parent.items():
        if parent is None:
            ordered[parent] = keys
            continue
        actual = set(keys)
        listed = [key for key in dict.fromkeys(nodes[parent].children_keys) if key in actual]
        unlisted = actual.difference(listed)
        ordered[parent] = listed + [key for key in keys if key in unlisted]
    return ordered


def _children_of(messages: Iterable[ImportedMessage]) -> dict[str | None, tuple[str, ...]]:
    children: dict[str | None, list[str]] = {}
    for message in messages:
        children.setdefault(message.parent_key, []).append(message.key)
    return {parent: tuple(keys) for parent, keys in children.items()}


def _newest_ending(messages: list[ImportedMessage]) -> str | None:
    # Both products append an edit or a regeneration after its siblings, so the last child is newest.
    children = _children_of(messages)
    key = None
    while key in children:
        key = children[key][-1]
    return key
