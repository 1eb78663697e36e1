from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ChatAdminConfig(admin_apps.AdminConfig):
    """Django's admin, on the site's own ``AdminSite`` (``chat.admin_site``)."""

    default = False  # named in INSTALLED_APPS; "chat" itself is ChatConfig
    default_site = "chat.admin_site.ChatAdminSite"


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save, pre_save

        from chat import accounts, checks  # noqa: F401 (checks registers itself)

        user_model = get_user_model()
        pre_save.connect(accounts.remember_activity, sender=user_model, dispatch_uid="chat-user-activity")
        post_save.connect(accounts.close_when_deactivated, sender=user_model, dispatch_uid="chat-user-closed")
