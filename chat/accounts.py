"""How people get, and lose, an account: the sign-up mode, invites, approval, deactivation."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chat import events
from chat.models import AccountRequest, Invite, SiteSettings

INVITE_UNKNOWN = "This invite link is not valid. Ask for a new one."
INVITE_USED = "This invite link has already been used. Ask for a new one."
INVITE_EXPIRED = "This invite link has expired. Ask for a new one."


def signup_mode() -> str:
    """``closed``, ``invite`` or ``approval``: the admin's choice, else ``CHAT_SIGNUP``."""
    chosen = SiteSettings.objects.filter(pk=1).values_list("signup", flat=True).first()
    return chosen or settings.CHAT_SIGNUP


# --- Invites ------------------------------------------------------------------------


def new_invite_token() -> str:
    return secrets.token_urlsafe(32)


def invite_expiry() -> datetime:
    return timezone.now() + timedelta(days=settings.CHAT_INVITE_DAYS)


def invite_state(invite: Invite) -> str:
    if invite.used_at is not None:
        return "Used"
    if invite.expires_at <= timezone.now():
        return "Expired"
    return "Open"


def invite_problem(token: str) -> str | None:
    """Why a link cannot be used now (a sentence for its page), or None when it can."""
    invite = Invite.objects.filter(token=token).first() if token else None
    if invite is None:
        return INVITE_UNKNOWN
    if invite.used_at is not None:
        return INVITE_USED
    if invite.expires_at <= timezone.now():
        return INVITE_EXPIRED
    return None


def signup_with_invite(*, token: str, username: str, password: str, email: str = "") -> AbstractBaseUser:
    """Create an active account from an invite, which is used up with it (once, even under a race)."""
    with transaction.atomic():
        invite = Invite.objects.select_for_update().filter(token=token).first()
        problem = invite_problem(token) if invite is not None else INVITE_UNKNOWN
        if problem is not None:
            raise ValidationError(problem)
        user = get_user_model().objects.create_user(username, email=email, password=password)
        Invite.objects.filter(pk=invite.pk).update(used_at=timezone.now(), used_by=user)
    return user


# --- Approval ------------------------------------------------------------------------


def request_account(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    """An inactive account, waiting for an admin's approval."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username, email=email, password=password, is_active=False)
        AccountRequest.objects.create(user=user)
    return user


def decide(requests: QuerySet[AccountRequest], *, approved: bool, by: AbstractBaseUser) -> int:
    """Approve (activate) or reject the waiting requests among ``requests``; how many were decided."""
    done = 0
    with transaction.atomic():
        for request in requests.select_for_update().filter(approved__isnull=True).select_related("user"):
            request.approved, request.decided_at, request.decided_by = approved, timezone.now(), by
            request.save(update_fields=["approved", "decided_at", "decided_by"])
            if approved:
                request.user.is_active = True
                request.user.save(update_fields=["is_active"])
            done += 1
    return done


def waiting_for_approval(username: str) -> bool:
    """Whether a sign-in failed because the account is still waiting (the login page says so)."""
    return AccountRequest.objects.filter(
        user__username=username, user__is_active=False, approved__isnull=True
    ).exists()


# --- Deactivation ----------------------------------------------------------------------


def remember_activity(
    sender: type, instance: AbstractBaseUser, update_fields: Any = None, **kwargs: Any
) -> None:
    """Before a user is saved: whether it was active (so a deactivation is noticed once)."""
    if instance.pk is None or (update_fields is not None and "is_active" not in update_fields):
        instance._was_active = None  # type: ignore[attr-defined]
        return
    was = type(instance).objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    instance._was_active = was  # type: ignore[attr-defined]


def close_when_deactivated(sender: type, instance: AbstractBaseUser, created: bool, **kwargs: Any) -> None:
    """A user just deactivated (in the admin or anywhere): once committed, end their live pages."""
    if not created and getattr(instance, "_was_active", None) and not instance.is_active:
        user_id = instance.pk
        transaction.on_commit(lambda: async_to_sync(events.close_account)(user_id))
