"""The admin: browse every stored conversation, read-only where history must not be rewritten;
add the OpenAI-compatible servers (providers) the model picker offers besides the environment's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from chat import providers, search
from chat.models import Conversation, Message, Provider
from chat.storable import storable_json
from chat.upstream import RESERVED_FIELDS


class JSONObjectField(forms.JSONField):
    """Django's JSON field, also answering JSON nested too deep to parse with a form error (not a 500)."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError("That JSON is nested too deeply.", code="invalid") from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            value = super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)  # shown back as typed, beside the error
        # Shown back on a form with errors: as it would be stored (a lone surrogate cannot be sent).
        return value if isinstance(value, InvalidJSONInput) else storable_json(value)


class ProviderForm(forms.ModelForm):
    """The provider, with its API key write-only: it is never rendered back, only its masked form."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Sent as a Bearer token to this server only; stored encrypted.",
    )
    remove_api_key = forms.BooleanField(label="Remove the stored key", required=False)

    class Meta:
        model = Provider
        field_classes = {"extra_fields": JSONObjectField}
        fields = (
            "name",
            "base_url",
            "enabled",
            "all_models",
            "model_ids",
            "context_length",
            "extra_fields",
            "stream_usage",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.api_key_encrypted:
            stored = self.instance.masked_key or "a key that no longer decrypts"
            self.fields[
                "api_key"
            ].help_text = f"Stored: {stored}. Leave empty to keep it; type a new one to replace it."
        else:
            del self.fields["remove_api_key"]

    def clean_base_url(self) -> str:
        return self.cleaned_data["base_url"].strip().rstrip("/")

    def clean_extra_fields(self) -> dict[str, Any]:
        extra = self.cleaned_data.get("extra_fields")
        if extra in (None, ""):
            return {}
        if not isinstance(extra, dict):
            raise forms.ValidationError('Extra request fields must be a JSON object, e.g. {"top_p": 0.9}.')
        reserved = sorted(RESERVED_FIELDS.intersection(extra))
        if reserved:
            raise forms.ValidationError(
                f"These fields are set by the app for every request and cannot be changed here: "
                f"{', '.join(reserved)}."
            )
        return storable_json(extra)  # stored, and sent in every request: no NUL, no lone surrogate

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("remove_api_key") and cleaned.get("api_key"):
            raise forms.ValidationError("Either type a new API key or remove the stored one, not both.")
        return cleaned

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        if self.cleaned_data.get("remove_api_key"):
            provider.set_api_key("")
        elif self.cleaned_data.get("api_key"):
            provider.set_api_key(self.cleaned_data["api_key"])
        if commit:
            provider.save()
            self.save_m2m()
        return provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ("name", "base_url", "enabled", "key", "models_offered")
    list_filter = ("enabled",)
    search_fields = ("name", "base_url")
    actions = ["check_model_list"]
    fieldsets = (
        (None, {"fields": ("name", "base_url", "api_key", "remove_api_key", "enabled")}),
        ("Models", {"fields": ("all_models", "model_ids", "context_length")}),
        ("Requests", {"fields": ("extra_fields", "stream_usage")}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Provider | None = None) -> Any:
        if obj is not None and obj.api_key_encrypted:
            return self.fieldsets
        # Nothing stored: nothing to remove.
        first = (None, {"fields": ("name", "base_url", "api_key", "enabled")})
        return (first, *self.fieldsets[1:])

    @admin.display(description="API key")
    def key(self, provider: Provider) -> str:
        return provider.masked_key or "-"

    @admin.display(description="models offered")
    def models_offered(self, provider: Provider) -> str:
        configured = provider.configured_models()
        listed = providers.cached_listing(provider) if provider.all_models else None
        if listed:
            return f"{len(listed)} listed by the server"
        if provider.all_models:
            fallback = f"; else {', '.join(configured)}" if configured else ""
            return Truncator(f"every listed model{fallback}").chars(120)
        return Truncator(", ".join(configured)).chars(120) or "none"

    @admin.action(description="Check the model list")
    def check_model_list(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        """Ask each selected server for its models now and say what each answered."""
        for provider, ids, error in providers.check_model_lists(list(queryset)):
            if error:
                self.message_user(request, f"{provider.name}: {error}", messages.ERROR)
            elif ids:
                shown = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
                plural = "s" if len(ids) != 1 else ""
                self.message_user(
                    request, f"{provider.name} lists {len(ids)} model{plural}: {shown}.", messages.SUCCESS
                )
            else:
                self.message_user(request, f"{provider.name} lists no models.", messages.WARNING)


class ConversationStatusFilter(admin.SimpleListFilter):
    """Conversations by the status of their latest reply (is something streaming, did it fail?)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(Message.Status.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
        if self.value():
            return queryset.filter(
                messages__role=Message.Role.ASSISTANT, messages__status=self.value()
            ).distinct()
        return queryset


TRANSCRIPT_ROWS = 50


class MessageInline(admin.TabularInline):
    model = Message
    fields = (
        "created_at",
        "role",
        "short_content",
        "short_reasoning",
        "status",
        "provider",
        "model",
        "finish_reason",
        "error",
        "tokens",
        "skipped_chunks",
        "request_id",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("created_at", "id")

    def has_add_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        """The latest ``TRANSCRIPT_ROWS`` messages of each conversation: a long one stays a light page.

        The whole transcript is one link away (``transcript`` on the conversation's page).
        """
        queryset = super().get_queryset(request)
        conversation_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if conversation_id is None:
            return queryset
        latest = Message.objects.filter(conversation_id=conversation_id).order_by("-id")
        return queryset.filter(pk__in=list(latest.values_list("pk", flat=True)[:TRANSCRIPT_ROWS]))

    @admin.display(description="text")
    def short_content(self, message: Message) -> str:
        return Truncator(message.content).chars(400)

    @admin.display(description="reasoning")
    def short_reasoning(self, message: Message) -> str:
        return Truncator(message.reasoning).chars(200)

    @admin.display(description="tokens")
    def tokens(self, message: Message) -> str:
        if message.role != Message.Role.ASSISTANT or message.status == Message.Status.STREAMING:
            return "-"
        if message.total_tokens is None and message.completion_tokens is None:
            return "not reported"  # the server sent no usage; nothing is estimated

        def shown(count: int | None) -> str:
            return "?" if count is None else str(count)

        return (
            f"{shown(message.prompt_tokens)} + {shown(message.completion_tokens)} = "
            f"{shown(message.total_tokens)}"
        )


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = (
        "title_or_placeholder",
        "owner",
        "provider",
        "model",
        "message_count",
        "last_activity",
        "latest_status",
    )
    list_filter = ("owner", "provider", "model", ConversationStatusFilter, "updated_at")
    # Message text is searched through the full-text index (get_search_results), never by LIKE.
    search_fields = ("title", "owner__username")
    search_help_text = (
        "Titles and owners by substring; message text by whole words (the last may be a prefix)."
    )
    list_select_related = ("owner", "provider")
    readonly_fields = ("id", "owner", "title_source", "transcript", "created_at", "updated_at")
    # Provider, model and options apply to the next reply; what was already said stays read-only.
    fields = (
        "id",
        "owner",
        "title",
        "title_source",
        "transcript",
        "provider",
        "model",
        "system_prompt",
        "temperature",
        "max_tokens",
        "created_at",
        "updated_at",
    )
    date_hierarchy = "updated_at"
    inlines = [MessageInline]
    show_full_result_count = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        text = search.matching_messages_sql(search_term)
        if text is not None:
            sql, params = text
            in_messages = queryset.filter(
                pk__in=RawSQL(f"SELECT conversation_id FROM chat_message WHERE id IN ({sql})", params)
            )
            found = found | in_messages
        return found, duplicates

    def save_model(
        self, request: HttpRequest, obj: Conversation, form: forms.ModelForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if "title" in form.changed_data:  # a title edited here is searched like any other
            search.index_title([obj.pk])

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        latest_reply = Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.ASSISTANT)
        return (
            super()
            .get_queryset(request)
            .annotate(
                message_total=Count("messages", distinct=True),
                latest_reply_status=Subquery(latest_reply.order_by("-id").values("status")[:1]),
            )
        )

    @admin.display(description="messages")
    def transcript(self, conversation: Conversation) -> str:
        """How many messages there are, and where to read them all (below: only the latest)."""
        total = conversation.messages.count()
        url = reverse("admin:chat_message_changelist") + f"?conversation__id__exact={conversation.pk}"
        shown = min(total, TRANSCRIPT_ROWS)
        return format_html(
            '{} in all; the latest {} are below. <a href="{}">Read every message</a>', total, shown, url
        )

    @admin.display(description="title", ordering="title")
    def title_or_placeholder(self, conversation: Conversation) -> str:
        return str(conversation)

    @admin.display(description="messages", ordering="message_total")
    def message_count(self, conversation: Conversation) -> int:
        return conversation.message_total  # type: ignore[attr-defined]

    @admin.display(description="last activity", ordering="updated_at")
    def last_activity(self, conversation: Conversation) -> datetime:
        return conversation.updated_at

    @admin.display(description="status", ordering="latest_reply_status")
    def latest_status(self, conversation: Conversation) -> str:
        status = conversation.latest_reply_status  # type: ignore[attr-defined]
        if not status:
            return "-"
        return format_html('<span class="status-{}">{}</span>', status, Message.Status(status).label)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "conversation",
        "role",
        "short_content",
        "status",
        "provider",
        "model",
        "created_at",
    )
    list_filter = ("role", "status", "provider", "model", "conversation__owner")
    # Text through the full-text index, request ids exactly (get_search_results), never by LIKE.
    search_fields = ()
    search_help_text = "Message text by whole words (the last may be a prefix), or a request id."

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return ("content",)  # shows the search box; the search itself is get_search_results

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        found = queryset.filter(request_id=term)
        text = search.matching_messages_sql(term)
        if text is not None:
            found = found | queryset.filter(pk__in=RawSQL(*text))
        return found, False

    list_select_related = ("conversation", "provider")
    readonly_fields = [field.name for field in Message._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="text")
    def short_content(self, message: Message) -> str:
        return Truncator(message.content).chars(100)
