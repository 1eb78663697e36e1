from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save, pre_save

        from chat import accounts

        user_model = get_user_model()
        pre_save.connect(accounts.remember_activity, sender=user_model, dispatch_uid="chat-user-activity")
        post_save.connect(accounts.close_when_deactivated, sender=user_model, dispatch_uid="chat-user-closed")
