"""Forms for the pages that are plain HTML forms (the chat itself speaks over the socket)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.forms import BaseUserCreationForm


class FirstAdminForm(BaseUserCreationForm):
    """The first account of a fresh install: a superuser."""

    class Meta(BaseUserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)

    def save(self, commit: bool = True):  # type: ignore[override]
        user = super().save(commit=False)
        user.is_staff = True
        user.is_superuser = True
        if commit:
            user.save()
        return user
