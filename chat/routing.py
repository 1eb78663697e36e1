from __future__ import annotations

from django.urls import path

from chat.consumers import ConversationConsumer

websocket_urlpatterns = [
    path("ws/c/<uuid:conversation_id>/", ConversationConsumer.as_asgi()),
    # The new-chat page: its socket becomes the conversation's once the first message creates it.
    path("ws/new/", ConversationConsumer.as_asgi()),
]
