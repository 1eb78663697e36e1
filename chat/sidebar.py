"""The sidebar's list of conversations: grouped by how recent they are, a page at a time.

Pages are keyset-paged on (last activity, id), the order of the ``conversation_owner_recent``
index, so the thousandth page costs what the first does and nothing is skipped or repeated when a
conversation moves to the top meanwhile.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format

from chat.models import Conversation

PAGE_SIZE = 50
TODAY = "Today"


def group_label(when: datetime, *, today: date) -> str:
    """Today, Yesterday, Previous 7 days, Previous 30 days, then the month ("November 2026")."""
    day = timezone.localtime(when).date()
    age = (today - day).days
    if age <= 0:
        return TODAY
    if age == 1:
        return "Yesterday"
    if age < 7:
        return "Previous 7 days"
    if age < 30:
        return "Previous 30 days"
    return date_format(day, "F Y")


@dataclass
class Group:
    label: str
    items: list[Conversation] = field(default_factory=list)
    continued: bool = False  # the previous page ended inside this group: no second heading


@dataclass
class Page:
    groups: list[Group]
    next_cursor: str = ""  # "" on the last page
    first: bool = True

    @property
    def empty(self) -> bool:
        return not any(group.items for group in self.groups)


def encode_cursor(conversation: Conversation) -> str:
    return f"{conversation.updated_at.isoformat()}_{conversation.pk.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID] | None:
    """The position a cursor names, or None for anything malformed (then the list starts over)."""
    when, _, key = cursor.rpartition("_")
    try:
        moment = parse_datetime(when)
        position = uuid.UUID(hex=key)
    except ValueError:
        return None
    if moment is None or timezone.is_naive(moment):
        return None
    return moment, position


def page(*, user: AbstractBaseUser, cursor: str = "", size: int = PAGE_SIZE) -> Page:
    """One page of the user's conversations, newest activity first, in date groups.

    The first page always has a Today group (maybe empty), where a new chat's entry is added.
    """
    conversations = Conversation.objects.filter(owner=user).only("id", "title", "updated_at")
    after = decode_cursor(cursor) if cursor else None
    previous_label = ""
    if after is not None:
        moment, key = after
        conversations = conversations.filter(Q(updated_at__lt=moment) | Q(updated_at=moment, id__lt=key))
    rows = list(conversations.order_by("-updated_at", "-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    today = timezone.localdate()
    if after is not None:
        previous_label = group_label(after[0], today=today)
    groups: list[Group] = [] if after is not None else [Group(TODAY)]
    for row in rows:
        label = group_label(row.updated_at, today=today)
        if not groups or groups[-1].label != label:
            groups.append(Group(label, continued=label == previous_label and not groups))
        groups[-1].items.append(row)
    return Page(groups=groups, next_cursor=encode_cursor(rows[-1]) if more else "", first=after is None)
