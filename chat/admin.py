"""The admin: browse every stored conversation, read-only where history must not be rewritten."""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.text import Truncator

from chat.models import Conversation, Message


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


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("created_at", "role", "short_content", "status", "model", "finish_reason", "error", "tokens")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("created_at", "id")

    def has_add_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False

    @admin.display(description="text")
    def short_content(self, message: Message) -> str:
        return Truncator(message.content).chars(400)

    @admin.display(description="tokens")
    def tokens(self, message: Message) -> str:
        if message.total_tokens is None:
            return "-"
        return f"{message.prompt_tokens} + {message.completion_tokens} = {message.total_tokens}"


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = (
        "title_or_placeholder",
        "owner",
        "model",
        "message_count",
        "last_activity",
        "latest_status",
    )
    list_filter = ("owner", "model", ConversationStatusFilter, "updated_at")
    search_fields = ("title", "messages__content", "owner__username")
    list_select_related = ("owner",)
    readonly_fields = ("id", "owner", "created_at", "updated_at")
    fields = ("id", "owner", "title", "model", "created_at", "updated_at")
    date_hierarchy = "updated_at"
    inlines = [MessageInline]
    show_full_result_count = False

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
    list_display = ("id", "conversation", "role", "short_content", "status", "model", "created_at")
    list_filter = ("role", "status", "model", "conversation__owner")
    search_fields = ("content", "conversation__title")
    list_select_related = ("conversation",)
    readonly_fields = [field.name for field in Message._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="text")
    def short_content(self, message: Message) -> str:
        return Truncator(message.content).chars(100)
