"""Conversations and their messages: what is stored, and what a reply's ending records."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Provider(models.Model):
    """An OpenAI-compatible server added by an admin, besides the one the environment configures.

    The API key is stored encrypted (``chat.secrets``) and only ever leaves the server in the
    ``Authorization`` header of a request to this provider.
    """

    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(
        "Base URL",
        max_length=500,
        help_text="Up to and including the version, e.g. https://api.openai.com/v1",
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True, help_text="Offered in the model picker.")
    all_models = models.BooleanField(
        "Offer every listed model",
        default=True,
        help_text="Offer every model the server lists at /models. Off: only the models below.",
    )
    model_ids = models.TextField(
        "Models",
        blank=True,
        help_text="One model id per line: the models offered when the server lists none, or when "
        "“Offer every listed model” is off.",
    )
    extra_fields = models.JSONField(
        "Extra request fields",
        default=dict,
        blank=True,
        help_text='Added to every chat request, e.g. {"top_p": 0.9} or OpenRouter\'s {"provider": {...}}.',
    )
    context_length = models.PositiveIntegerField(
        "Context window (tokens)",
        null=True,
        blank=True,
        help_text="Used when the server's /models does not report a model's context length. "
        "Empty: the site's CHAT_CONTEXT_LENGTH.",
    )
    # Switched off (and remembered) when the server answers 400 to stream_options.
    stream_usage = models.BooleanField(
        "Ask for usage in the stream",
        default=True,
        help_text="Sends stream_options.include_usage; turned off automatically if the server rejects it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def api_key(self) -> str:
        from chat.secrets import decrypt

        return decrypt(self.api_key_encrypted)

    def set_api_key(self, key: str) -> None:
        from chat.secrets import encrypt

        self.api_key_encrypted = encrypt(key.strip()) if key.strip() else ""

    @property
    def masked_key(self) -> str:
        from chat.secrets import mask

        return mask(self.api_key) if self.api_key_encrypted else ""

    def configured_models(self) -> list[str]:
        return [line.strip() for line in self.model_ids.splitlines() if line.strip()]


class Conversation(models.Model):
    """One chat thread, owned by one user; its id is the public, unguessable URL key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )

    class TitleSource(models.TextChoices):
        QUESTION = "question", "First words of the question"
        REQUESTED = "requested", "Asked of the model"
        MODEL = "model", "Written by the model"
        USER = "user", "Renamed by the user"
        IMPORTED = "imported", "Imported"

    title = models.CharField(max_length=200, blank=True)
    # Who wrote the title. The model is asked once (question → requested, claimed atomically, so
    # at most one request per conversation); its answer lands only while still "requested", so a
    # rename (user) always wins.
    title_source = models.CharField(
        max_length=16, choices=TitleSource.choices, default=TitleSource.QUESTION, editable=False
    )
    model = models.CharField(max_length=200, help_text="Model id used for the next reply.")
    # None: the server configured by the environment.
    provider = models.ForeignKey(
        Provider, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    # None: the site's default (CHAT_SYSTEM_PROMPT); "" means no system prompt at all.
    system_prompt = models.TextField(null=True, blank=True)  # noqa: DJ001 (None and "" differ)
    temperature = models.FloatField(null=True, blank=True, help_text="Sent only when set.")
    max_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Sent only when set.")
    # The branch on screen ends here: regenerating or editing forks the history,
    # and every page shows (and every request sends) the path from the root to this leaf.
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    # Bumped by every change to what the page shows (messages added, a reply ending, a branch
    # switch), so a reconnecting page can tell whether it missed anything.
    version = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True, help_text="Last activity.")

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]
        # Reading messages in the admin is apart from seeing conversations' metadata and usage.
        permissions = [("view_transcript", "Can read the messages of conversations")]

    def __str__(self) -> str:
        return self.title or "New chat"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("chat:conversation", args=[self.id])


class Message(models.Model):
    """A user's message or an assistant's reply.

    An assistant row is created with status ``streaming`` before the upstream is
    called, and its ending (status, finish reason, usage, timings) is recorded on
    it, so a reply is never only in memory.
    """

    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        STOPPED = "stopped", "Stopped"
        ERROR = "error", "Error"
        INTERRUPTED = "interrupted", "Interrupted"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # The message this one answers or follows; siblings (same parent) are versions of one turn.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children", editable=False
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True)
    # Idempotency key chosen by the browser, so a message re-sent after a
    # reconnect is stored once.
    client_id = models.UUIDField(null=True, blank=True, editable=False)
    model = models.CharField(max_length=200, blank=True)
    provider = models.ForeignKey(
        Provider, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    # The model's reasoning ("Thinking"), shown apart from the answer and never sent back upstream.
    reasoning = models.TextField(blank=True)
    # A finished reply's answer and reasoning as sanitized HTML (chat.markdown), written with its
    # ending, so showing it renders nothing again.
    content_html = models.TextField(blank=True, editable=False)
    reasoning_html = models.TextField(blank=True, editable=False)
    finish_reason = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True, help_text="Plain-language reason shown to the user.")
    # Token counts as the server reported them; None when it reported none (never estimated).
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    skipped_chunks = models.PositiveIntegerField(
        default=0, help_text="Stream events that were not JSON, skipped."
    )
    request_id = models.CharField(max_length=64, blank=True, help_text="Matches the server log lines.")
    # How many of the oldest messages of the branch were left out of this reply's request to fit
    # the model's context window (shown under the reply).
    omitted_messages = models.PositiveIntegerField(default=0, editable=False)
    # The limit that refused this reply before the upstream was asked (chat.limits), if one did.
    refused_by = models.CharField(max_length=32, blank=True, editable=False)
    # While streaming: the worker writing the reply, and until when it vouches for it. A reply
    # whose lease ran out belongs to a worker that died; it is marked interrupted.
    worker = models.CharField(max_length=200, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        # The per-minute message limit, counted in the database, reads the last minute's replies.
        indexes = [models.Index(fields=["created_at"], name="message_created")]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=models.Q(client_id__isnull=False),
                name="message_unique_client_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()}: {self.content[:60]}"

    @property
    def dom_id(self) -> str:
        return f"m-{self.pk}"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    @property
    def tokens_per_second(self) -> float | None:
        """How fast the answer came once it had started (needs the server's token count)."""
        if not self.completion_tokens or self.duration_ms is None or self.first_token_ms is None:
            return None
        streaming_ms = self.duration_ms - self.first_token_ms
        return self.completion_tokens * 1000 / streaming_ms if streaming_ms > 0 else None

    @property
    def tokens_reported(self) -> str:
        """The reply's usage as the server reported it: "prompt + completion = total"."""
        if self.role != self.Role.ASSISTANT or self.status == self.Status.STREAMING:
            return "-"
        if self.total_tokens is None and self.completion_tokens is None:
            return "not reported"  # the server sent no usage; nothing is estimated here

        def shown(count: int | None) -> str:
            return "?" if count is None else str(count)

        return f"{shown(self.prompt_tokens)} + {shown(self.completion_tokens)} = {shown(self.total_tokens)}"

    @property
    def finish_notice(self) -> str:
        """What a complete reply that did not end naturally tells its reader."""
        return FINISH_NOTICES.get(self.finish_reason, "") if self.status == self.Status.COMPLETE else ""


FINISH_NOTICES = {
    "length": "The answer hit the length limit.",
    "content_filter": "The answer was cut short by the provider's content filter.",
}


class Preferences(models.Model):
    """What a user chose for the page itself, remembered across devices."""

    class Theme(models.TextChoices):
        SYSTEM = "system", "Follow the system"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences"
    )
    theme = models.CharField(max_length=8, choices=Theme.choices, default=Theme.SYSTEM)

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"Preferences of {self.user}"


class SiteSettings(models.Model):
    """What admins switch at run time; one row. Blank fields follow the settings file."""

    class Signup(models.TextChoices):
        CLOSED = "closed", "Closed: admins create accounts"
        INVITE = "invite", "Invite links"
        APPROVAL = "approval", "Open, with an admin's approval"

    signup = models.CharField(
        max_length=16,
        choices=Signup.choices,
        blank=True,
        help_text="Blank: as CHAT_SIGNUP says.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "site settings"

    def __str__(self) -> str:
        return "Site settings"


class Invite(models.Model):
    """A single-use, expiring link to create an account (sign-up mode "invite")."""

    token = models.CharField(max_length=64, unique=True, editable=False)
    email = models.EmailField(blank=True, help_text="Only for your records; anyone with the link can use it.")
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True, editable=False)
    used_by = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invite",
        editable=False,
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.note or self.email or f"Invite of {self.created_at:%Y-%m-%d %H:%M}"


class AccountRequest(models.Model):
    """An account asked for in sign-up mode "approval": inactive until an admin approves it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_request"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved = models.BooleanField(null=True, help_text="Empty while waiting.")

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"Account request of {self.user}"


class GroupLimits(models.Model):
    """A group's own limits, in place of the settings' defaults. Empty: the default; 0: no limit.

    A user in several groups gets the most generous value of each.
    """

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="limits")
    messages_per_minute = models.PositiveIntegerField(null=True, blank=True)
    messages_per_day = models.PositiveIntegerField(null=True, blank=True)
    concurrent_replies = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_month = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = verbose_name_plural = "group limits"

    def __str__(self) -> str:
        return f"Limits of {self.group}"


class UsageDay(models.Model):
    """One user's use of one model on one day (UTC), added to at each reply's ending."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    model = models.CharField(max_length=200)
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    # Replies whose server reported no usage: their tokens above are estimates.
    estimated = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    stops = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0, help_text="Messages a limit refused.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day", "model"], name="usage_day_unique")]
        indexes = [models.Index(fields=["day"], name="usage_day")]
        verbose_name = "usage (per day)"
        verbose_name_plural = "usage (per day)"

    def __str__(self) -> str:
        return f"{self.user} · {self.model} · {self.day}"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TranscriptView(models.Model):
    """An opening of a conversation's messages in the admin: who, whose, when, from where.

    Names are kept as text too, so the record outlives the accounts and the conversation.
    """

    viewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    viewer_name = models.CharField(max_length=150)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="transcript_views"
    )
    owner_name = models.CharField(max_length=150)
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, related_name="transcript_views"
    )
    conversation_title = models.CharField(max_length=200)
    viewed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    address = models.GenericIPAddressField(null=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-viewed_at"]
        verbose_name = "transcript view"

    def __str__(self) -> str:
        return f"{self.viewer_name} read {self.owner_name}'s conversation at {self.viewed_at:%Y-%m-%d %H:%M}"


class LoginFailures(models.Model):
    """Failed sign-ins for one username or address within a window (``chat.login_throttle``).

    Used only without Redis; ``key`` is ``user:<hash>`` or ``addr:<address>``, never a name.
    """

    key = models.CharField(max_length=100, unique=True)
    failures = models.PositiveIntegerField(default=0)
    window_ends = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name_plural = "login failures"

    def __str__(self) -> str:
        return f"{self.failures} failed sign-ins for {self.key} until {self.window_ends:%Y-%m-%d %H:%M}"
