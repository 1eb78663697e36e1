"""Admins reading transcripts: who may, and the record of every time one did.

Reading messages takes the ``chat.view_transcript`` permission, apart from seeing conversations'
metadata and usage (support staff can help with "my reply failed" without reading the chat). Each
opening of a transcript in the admin writes a ``TranscriptView``; with ``CHAT_AUDIT_NOTIFY_USERS``
on, the owner's page of that conversation says when an administrator read it.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from chat.models import Conversation, TranscriptView

PERMISSION = "chat.view_transcript"


def may_read(user: AbstractBaseUser) -> bool:
    return user.is_active and user.has_perm(PERMISSION)


def _address(request: HttpRequest) -> str | None:
    """The client's address: the proxy's first hop when the deployment says one is in front."""
    if getattr(settings, "DJANGO_BEHIND_PROXY", False):
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR") or None


def record_view(request: HttpRequest, conversation: Conversation) -> TranscriptView:
    """Write down that ``request.user`` read ``conversation``'s messages, from where."""
    viewer = request.user
    owner = conversation.owner
    return TranscriptView.objects.create(
        viewer=viewer,
        viewer_name=viewer.get_username(),
        owner=owner,
        owner_name=owner.get_username(),
        conversation=conversation,
        conversation_title=str(conversation)[:200],
        address=_address(request),
        user_agent=request.headers.get("User-Agent", "")[:300],
    )


def last_view_of(conversation: Conversation) -> TranscriptView | None:
    """What the owner is told on their page (when ``CHAT_AUDIT_NOTIFY_USERS`` is on)."""
    if not settings.CHAT_AUDIT_NOTIFY_USERS:
        return None
    return conversation.transcript_views.order_by("-viewed_at").first()
