"""Forms for the pages that are plain HTML forms (the chat itself speaks over the socket)."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import BaseUserCreationForm

from chat import selectors
from chat.import_progress import is_token
from chat.models import Conversation


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


class ConversationSettingsForm(forms.Form):
    """A conversation's options for its next replies.

    The fields only collect text; ``services.conversation_settings_update`` checks the values, so
    every caller gets the same sentences.
    """

    system_prompt = forms.CharField(
        label="System prompt",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Sent before the conversation with every request. Empty: no system prompt.",
    )
    temperature = forms.CharField(
        label="Temperature",
        required=False,
        widget=forms.NumberInput(attrs={"min": "0", "max": "2", "step": "0.1", "inputmode": "decimal"}),
        help_text="From 0 to 2. Empty: the model's default.",
    )
    max_tokens = forms.CharField(
        label="Max tokens",
        required=False,
        widget=forms.NumberInput(attrs={"min": "1", "step": "1"}),
        help_text="The longest reply, in tokens. Empty: no limit.",
    )

    def __init__(self, data: Any = None, *, conversation: Conversation) -> None:
        initial = {
            "system_prompt": selectors.system_prompt(conversation),
            "temperature": conversation.temperature,
            "max_tokens": conversation.max_tokens,
        }
        super().__init__(data, initial=initial, auto_id="settings-%s")


class ImportForm(forms.Form):
    """An export file of another chat product; ``chat.importers`` says what is wrong with it."""

    file = forms.FileField(label="Import conversations")
    # Names the socket the page hears the import's progress on (``chat.import_progress``).
    progress = forms.CharField(
        required=False, widget=forms.HiddenInput, initial=lambda: secrets.token_urlsafe(16)
    )

    def clean_progress(self) -> str:
        """A token that cannot name a progress group only means no progress is shown."""
        token = self.cleaned_data["progress"]
        return token if is_token(token) else ""
