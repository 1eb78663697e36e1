"""The admin: browse every stored conversation, read-only where history must not be rewritten;
add the OpenAI-compatible servers (providers) the model picker offers besides the environment's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.models import Group
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from chat import accounts, oversight, providers, search, selectors, usage, usage_chart
from chat.models import (
    AccountRequest,
    Conversation,
    GroupLimits,
    Invite,
    Message,
    Provider,
    SiteSettings,
    TranscriptView,
    UsageDay,
)
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
    show_full_result_count = False

    class Media:
        css = {"all": ("chat/markdown.css", "chat/admin.css")}

    def get_fields(self, request: HttpRequest, obj: Conversation | None = None) -> Any:
        """Without the transcript permission: the conversation's metadata, none of its text."""
        fields = super().get_fields(request, obj)
        if oversight.may_read(request.user):
            return fields
        return [name for name in fields if name not in ("transcript", "system_prompt")]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200 and oversight.may_read(request.user):
            conversation = self.get_object(request, object_id)
            if conversation is not None:
                oversight.record_view(request, conversation)
        return response

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        # Which conversations contain a word says something of their text: for transcript readers.
        text = search.matching_messages_sql(search_term) if oversight.may_read(request.user) else None
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
        """The branch on screen as the chat page draws it (its latest messages), read-only."""
        if conversation.pk is None:
            return "-"
        url = reverse("admin:chat_message_changelist") + f"?conversation__id__exact={conversation.pk}"
        shown = selectors.shown_messages(conversation=conversation)
        return render_to_string("chat/_admin_transcript.html", {"messages": shown, "all_url": url})

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

    def has_view_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        """Messages are transcripts: their text is for holders of the transcript permission only."""
        return oversight.may_read(request.user) and super().has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return oversight.may_read(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return oversight.may_read(request.user) and super().has_delete_permission(request, obj)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        response = super().changelist_view(request, extra_context)
        conversation_id = request.GET.get("conversation__id__exact")
        if conversation_id and getattr(response, "status_code", 0) == 200:
            conversation = Conversation.objects.filter(pk=conversation_id).select_related("owner").first()
            if conversation is not None:
                oversight.record_view(request, conversation)
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            message = self.get_object(request, object_id)
            if message is not None:
                oversight.record_view(request, message.conversation)
        return response

    @admin.display(description="text")
    def short_content(self, message: Message) -> str:
        return Truncator(message.content).chars(100)


# --- Accounts, limits, usage and the audit log ------------------------------------------------


@admin.register(SiteSettings)
class SiteSettingsAdmin(admin.ModelAdmin):
    """One row: what admins switch at run time (the sign-up mode)."""

    list_display = ("__str__", "signup_mode")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not SiteSettings.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: SiteSettings | None = None) -> bool:
        return False

    @admin.display(description="sign-up in effect")
    def signup_mode(self, obj: SiteSettings) -> str:
        return SiteSettings.Signup(accounts.signup_mode()).label


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ("__str__", "state", "link", "created_by", "created_at", "expires_at", "used_by")
    readonly_fields = ("link", "created_by", "created_at", "used_at", "used_by")
    fields = ("email", "note", "expires_at", "link", "created_by", "created_at", "used_at", "used_by")

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"expires_at": accounts.invite_expiry()}

    def save_model(self, request: HttpRequest, obj: Invite, form: forms.ModelForm, change: bool) -> None:
        if not change:
            obj.token = accounts.new_invite_token()
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="link")
    def link(self, invite: Invite) -> str:
        if not invite.token:
            return "Shown once saved."
        path = reverse("invite", args=[invite.token])
        return format_html('<a href="{}">{}</a>', path, path)

    @admin.display(description="state")
    def state(self, invite: Invite) -> str:
        return accounts.invite_state(invite)


@admin.register(AccountRequest)
class AccountRequestAdmin(admin.ModelAdmin):
    list_display = ("user", "email", "requested_at", "decision", "decided_by", "decided_at")
    list_filter = ("approved",)
    readonly_fields = ("user", "requested_at", "decided_at", "decided_by", "approved")
    actions = ("approve", "reject")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="email")
    def email(self, request_: AccountRequest) -> str:
        return request_.user.email

    @admin.display(description="decision")
    def decision(self, request_: AccountRequest) -> str:
        return {None: "Waiting", True: "Approved", False: "Rejected"}[request_.approved]

    @admin.action(description="Approve the selected accounts")
    def approve(self, request: HttpRequest, queryset: QuerySet[AccountRequest]) -> None:
        done = accounts.decide(queryset, approved=True, by=request.user)
        self.message_user(request, f"Approved {done} account{'s' if done != 1 else ''}.", messages.SUCCESS)

    @admin.action(description="Reject the selected accounts")
    def reject(self, request: HttpRequest, queryset: QuerySet[AccountRequest]) -> None:
        done = accounts.decide(queryset, approved=False, by=request.user)
        self.message_user(request, f"Rejected {done} account{'s' if done != 1 else ''}.", messages.SUCCESS)


class GroupLimitsInline(admin.StackedInline):
    model = GroupLimits
    can_delete = True
    verbose_name_plural = "limits (empty: the default from settings; 0: no limit)"


admin.site.unregister(Group)


@admin.register(Group)
class GroupWithLimitsAdmin(GroupAdmin):
    inlines = [GroupLimitsInline]


@admin.register(UsageDay)
class UsageDayAdmin(admin.ModelAdmin):
    """Usage per user, model and day, with the last 30 days' totals, top users and models, and a chart."""

    list_display = (
        "day",
        "user",
        "model",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "errors",
        "stops",
        "refused",
    )
    list_filter = ("day", "model")
    search_fields = ("user__username", "model")
    date_hierarchy = "day"
    list_select_related = ("user",)
    change_list_template = "admin/chat/usageday/change_list.html"
    readonly_fields = [field.name for field in UsageDay._meta.fields]

    class Media:
        css = {"all": ("chat/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageDay | None = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        summary = usage.instance_usage(days=30)
        chart = usage_chart.daily_bars(
            [(day, totals.tokens) for day, totals in summary.per_day], label="Tokens per day, last 30 days"
        )
        extra = {"summary": summary, "chart": chart, **(extra_context or {})}
        return super().changelist_view(request, extra)


@admin.register(TranscriptView)
class TranscriptViewAdmin(admin.ModelAdmin):
    """Who read whose conversation, when and from where: for superusers only, and never edited."""

    list_display = ("viewed_at", "viewer_name", "owner_name", "conversation_title", "address")
    list_filter = ("viewer_name", "owner_name")
    search_fields = ("viewer_name", "owner_name", "conversation_title")
    date_hierarchy = "viewed_at"
    readonly_fields = [field.name for field in TranscriptView._meta.fields]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: TranscriptView | None = None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TranscriptView | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: TranscriptView | None = None) -> bool:
        return False
