"""Reads shared by views, the consumer and the streaming engine.

``conversation_for_user`` is the single access check: anything a user may not
see is a 404, whether it does not exist or belongs to someone else.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connections, router
from django.http import Http404

from chat import context
from chat.models import Conversation, Message
from chat.upstream import ChatRequest


def conversation_for_user(
    user: AbstractBaseUser | AnonymousUser, conversation_id: uuid.UUID | str
) -> Conversation:
    """The user's conversation, or ``Http404`` for anything else (missing, foreign, malformed id)."""
    if not user.is_authenticated:
        raise Http404("No such conversation.")
    try:
        key = conversation_id if isinstance(conversation_id, uuid.UUID) else uuid.UUID(str(conversation_id))
        return Conversation.objects.get(pk=key, owner=user)
    except (ValueError, Conversation.DoesNotExist):
        raise Http404("No such conversation.") from None


def message_in(*, conversation: Conversation, message_id: int) -> Message:
    """A message of a conversation the caller may see, or ``Http404``."""
    message = conversation.messages.filter(pk=message_id).first()
    if message is None:
        raise Http404("No such message.")
    return message


def _tree(conversation: Conversation) -> dict[int, int | None]:
    """Every message id of the conversation and its parent id (small rows: no text)."""
    return dict(conversation.messages.order_by("id").values_list("id", "parent_id"))


def _path_to(tree: dict[int, int | None], leaf_id: int | None) -> list[int]:
    path: list[int] = []
    while leaf_id is not None and leaf_id in tree:
        path.append(leaf_id)
        leaf_id = tree[leaf_id]
    path.reverse()
    return path


WINDOW = 50  # messages a page opens with; older ones come a page at a time as the reader scrolls up


class Branch(list):
    """Messages of the branch on screen, oldest first; ``older`` says whether earlier ones exist."""

    older: bool = False


def branch_path(conversation: Conversation) -> tuple[list[int], dict[int, int | None]]:
    """The ids of the branch on screen, root first, and the whole tree (ids and parent ids only)."""
    tree = _tree(conversation)
    if not tree:
        return [], tree
    leaf_id = conversation.current_leaf_id if conversation.current_leaf_id in tree else max(tree)
    return _path_to(tree, leaf_id), tree


def conversation_messages(
    *,
    conversation: Conversation,
    latest: int | None = None,
    before: int | None = None,
    start_at: int | None = None,
) -> Branch:
    """The branch on screen, oldest first; each message knows its versions (siblings).

    ``latest`` keeps only the newest that many (ending at ``before`` when given: an older page);
    ``start_at`` widens the window back to that message. The tree is read as ids only, and only
    the messages shown are read whole, so opening a long conversation costs what a short one does.

    Sets ``versions`` (ids of the message's siblings, itself included, oldest first) and
    ``version_number`` (its 1-based place among them) on every message returned.
    """
    path, tree = branch_path(conversation)
    end = len(path)
    if before is not None:
        end = path.index(before) if before in path else 0
    begin = 0 if latest is None else max(0, end - latest)
    if start_at is not None and start_at in path:
        begin = min(begin, path.index(start_at))
    shown = path[begin:end]
    siblings: dict[int | None, list[int]] = {}
    for message_id, parent_id in tree.items():
        siblings.setdefault(parent_id, []).append(message_id)
    by_id = Message.objects.in_bulk(shown)
    messages = Branch()
    messages.older = begin > 0
    for message_id in shown:
        message = by_id[message_id]
        message.versions = siblings[message.parent_id]  # type: ignore[attr-defined]
        message.version_number = message.versions.index(message_id) + 1  # type: ignore[attr-defined]
        messages.append(message)
    return messages


def shown_messages(*, conversation: Conversation, start_at: int | None = None) -> Branch:
    """What a page shows of the branch: the latest ``WINDOW`` messages (back to ``start_at``)."""
    return conversation_messages(conversation=conversation, latest=WINDOW, start_at=start_at)


def attach_versions(message: Message) -> Message:
    """Set ``versions`` and ``version_number`` on one message, as ``conversation_messages`` does."""
    siblings = Message.objects.filter(conversation_id=message.conversation_id, parent_id=message.parent_id)
    message.versions = list(siblings.order_by("id").values_list("id", flat=True))  # type: ignore[attr-defined]
    message.version_number = message.versions.index(message.pk) + 1  # type: ignore[attr-defined]
    return message


def newest_leaf_below(*, conversation: Conversation, message_id: int) -> int:
    """Follow the newest child from ``message_id`` down to a leaf (where a switched-to version leads)."""
    newest_child: dict[int, int] = {}
    for child_id, parent_id in _tree(conversation).items():
        if parent_id is not None:
            newest_child[parent_id] = max(child_id, newest_child.get(parent_id, child_id))
    while message_id in newest_child:
        message_id = newest_child[message_id]
    return message_id


def streaming_messages(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.filter(status=Message.Status.STREAMING).order_by("id"))


def system_prompt(conversation: Conversation) -> str:
    """The conversation's own system prompt, or the site's default when it has none set."""
    if conversation.system_prompt is not None:
        return conversation.system_prompt
    return settings.CHAT_SYSTEM_PROMPT


class ReplyRequest(NamedTuple):
    request: ChatRequest
    omitted: int  # messages of the branch left out to fit the model's context window


def reply_request(*, reply: Message, context_length: int) -> ReplyRequest:
    """Everything that goes upstream for ``reply``: model, history and the conversation's options.

    The history is cut to fit ``context_length`` tokens (``chat.context.fit``), oldest turns first.
    """
    conversation = reply.conversation
    fitted = context.fit(
        reply_history(reply=reply), context_length=context_length, max_tokens=conversation.max_tokens
    )
    request = ChatRequest(
        model=reply.model,
        messages=fitted.messages,
        temperature=conversation.temperature,
        max_tokens=conversation.max_tokens,
    )
    return ReplyRequest(request, fitted.omitted)


# The branch above a message, root first, read in one query however long the conversation: the
# recursive part follows parent links by primary key, and only role and content are selected.
_HISTORY_SQL = """
WITH RECURSIVE branch (id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM {table} WHERE id = %s
    UNION ALL
    SELECT m.id, m.parent_id, branch.depth + 1 FROM {table} m JOIN branch ON m.id = branch.parent_id
)
SELECT m.role, m.content FROM branch JOIN {table} m ON m.id = branch.id ORDER BY branch.depth DESC
"""


def reply_history(*, reply: Message) -> list[dict[str, str]]:
    """What goes upstream for ``reply``: the system prompt and the branch above it (one query).

    Empty assistant turns (a reply that failed before its first token) are left
    out; partial text of a stopped or failed reply is kept, as it is on screen.
    """
    history: list[dict[str, str]] = []
    if prompt := system_prompt(reply.conversation):
        history.append({"role": "system", "content": prompt})
    if reply.parent_id is None:
        return history
    connection = connections[router.db_for_read(Message)]
    with connection.cursor() as cursor:
        cursor.execute(
            _HISTORY_SQL.format(table=connection.ops.quote_name(Message._meta.db_table)), [reply.parent_id]
        )
        for role, content in cursor.fetchall():
            if role == Message.Role.ASSISTANT and not content:
                continue
            history.append({"role": role, "content": content})
    return history
