from __future__ import annotations

from django.urls import path

from chat.consumers import ConversationConsumer
from chat.import_progress import ImportProgressConsumer

websocket_urlpatterns = [
    path("ws/c/<uuid:conversation_id>/", ConversationConsumer.as_asgi()),
    # The new-chat page: its socket becomes the conversation's once the first message creates it.
    path("ws/new/", ConversationConsumer.as_asgi()),
    # The import page listens here for the progress of the file it is sending.
    path("ws/import/<str:token>/", ImportProgressConsumer.as_asgi()),
]
