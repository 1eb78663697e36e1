from __future__ import annotations

from django.urls import path

from chat import account_views, views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.conversation_create, name="conversation_create"),
    path("c/<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
    path("c/<uuid:conversation_id>/settings/", views.conversation_settings, name="conversation_settings"),
    path("c/<uuid:conversation_id>/m/<int:message_id>/source", views.message_source, name="message_source"),
    path("c/<uuid:conversation_id>/export.md", views.export_conversation, {"kind": "md"}, "export_markdown"),
    path("c/<uuid:conversation_id>/export.json", views.export_conversation, {"kind": "json"}, "export_json"),
    path("c/<uuid:conversation_id>/messages/", views.older_messages, name="older_messages"),
    path("c/<uuid:conversation_id>/rename/", views.conversation_rename, name="conversation_rename"),
    path("c/<uuid:conversation_id>/delete/", views.conversation_delete, name="conversation_delete"),
    path("conversations/", views.conversation_page, name="conversation_page"),
    path("search/", views.search_conversations, name="search"),
    path("export/", views.export_all, name="export_all"),
    path("import/", views.import_conversations, name="import"),
    path("setup/", views.first_run, name="first_run"),
    path("preferences/theme/", views.preferences_theme, name="preferences_theme"),
    path("usage/", account_views.usage_page, name="usage"),
]
