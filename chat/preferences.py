"""What a user chose for the page itself (the theme): read with the user, stored by one service.

Every page shows the theme in ``<html data-theme>``. Reading ``user.preferences`` there would cost
each page a query, so the authentication backend loads the preferences in the same query as the
user (``select_related``), and the context processor reads them from the user it already has.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest

from chat.models import Preferences

THEMES = frozenset(Preferences.Theme.values)


class PreferencesBackend(ModelBackend):
    """Django's model backend, loading the user's preferences with the user (one query, not two).

    A user without preferences yet comes back with the relation known to be empty, so asking for it
    costs no query either.
    """

    def get_user(self, user_id: Any) -> Any:
        users = get_user_model()._default_manager.select_related("preferences")
        try:
            user = users.get(pk=user_id)
        except get_user_model().DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None

    async def aget_user(self, user_id: Any) -> Any:
        users = get_user_model()._default_manager.select_related("preferences")
        try:
            user = await users.aget(pk=user_id)
        except get_user_model().DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None


def theme_of(user: Any) -> str:
    """``light``, ``dark`` or ``system`` (also for anonymous users and users who never chose)."""
    if not getattr(user, "is_authenticated", False):
        return Preferences.Theme.SYSTEM
    try:
        return user.preferences.theme
    except ObjectDoesNotExist:
        return Preferences.Theme.SYSTEM


def theme_set(*, user: Any, theme: str) -> Preferences:
    """Remember the user's theme (the preferences row is made on first use)."""
    if theme not in THEMES:
        raise ValueError(f"Unknown theme {theme!r}")
    preferences, _ = Preferences.objects.get_or_create(user=user)
    if preferences.theme != theme:
        preferences.theme = theme
        preferences.save(update_fields=["theme"])
    return preferences


def theme(request: HttpRequest) -> dict[str, str]:
    """Context processor: ``theme`` for ``<html data-theme>``; empty when the system decides."""
    chosen = theme_of(getattr(request, "user", None))
    return {"theme": "" if chosen == Preferences.Theme.SYSTEM else chosen}
