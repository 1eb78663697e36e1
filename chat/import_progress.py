"""An import's progress, from the request doing it to the page that sent the file.

The import page's form carries a token the page chose; the page opens ``/ws/import/<token>/`` and
the POST handler, while it reads and stores the file, publishes how far it has got to the group of
that user and token. The group goes through the channel layer, so the socket and the upload may be
served by different workers (Redis), or the same one (in memory). Groups are named from the
signed-in user as well as the token: a page only ever hears its own user's imports.

Progress is a courtesy: a page without JavaScript (no socket) gets the same result page, and a
channel layer that fails never fails the import.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from chat.importing import ImportProgress, ProgressCallback

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def is_token(token: str) -> bool:
    """Whether ``token`` can name a progress group (letters, digits, ``-`` and ``_``; 16 to 64 long)."""
    return bool(_TOKEN.fullmatch(token))


def group_name(*, user_id: Any, token: str) -> str:
    return f"import.{user_id}.{token}"


def publisher(*, user_id: Any, token: str) -> ProgressCallback | None:
    """A progress callback for ``importing.import_file`` that tells the user's page; None without a token.

    Called from the request's thread (a synchronous view): each report is one ``group_send``.
    """
    layer = get_channel_layer()
    if layer is None or not is_token(token):
        return None
    group = group_name(user_id=user_id, token=token)
    failed = False

    def publish(progress: ImportProgress) -> None:
        nonlocal failed
        if failed:
            return
        try:
            async_to_sync(layer.group_send)(group, {"type": "import.progress", "progress": as_json(progress)})
        except Exception:
            failed = True  # the page goes without progress; the import goes on
            logger.exception("Could not publish import progress; carrying on without it")

    return publish


def as_json(progress: ImportProgress) -> dict[str, Any]:
    return {
        "phase": progress.phase,
        "bytes_read": progress.bytes_read,
        "size": progress.size,
        "conversations": progress.conversations,
        "total": progress.total,
    }


class ImportProgressConsumer(AsyncJsonWebsocketConsumer):
    """Listens only: joins the signed-in user's group for the token in its path, forwards reports."""

    async def connect(self) -> None:
        self.group = None
        user = self.scope.get("user")
        token = self.scope["url_route"]["kwargs"]["token"]
        if user is None or not user.is_authenticated or not is_token(token):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = group_name(user_id=user.pk, token=token)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The page has nothing to say here; whatever it sends is ignored."""

    async def import_progress(self, event: dict[str, Any]) -> None:
        await self.send_json(event["progress"])
