"""``/healthz`` for load balancers: whether this worker can reach its database and channel layer.

200 with ``{"status": "ok", ...}`` when both answer, 503 naming what failed otherwise. The channel
layer is checked by a real round trip (a message sent to a fresh channel and received back), so
a Redis that accepts connections but cannot relay counts as down. No login; nothing secret in
the answer.
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

TIMEOUT = 2.0


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer")
    channel = await layer.new_channel("healthz.")
    await layer.send(channel, {"type": "healthz"})
    message = await layer.receive(channel)
    if message.get("type") != "healthz":
        raise RuntimeError("the channel layer relayed something else")


async def check() -> dict[str, str]:
    """Each part's state: "ok", or a short reason."""
    parts: dict[str, str] = {}
    for name, probe in (("database", database_sync_to_async(_database)), ("channel_layer", _channel_layer)):
        try:
            await asyncio.wait_for(probe(), TIMEOUT)
            parts[name] = "ok"
        except TimeoutError:
            parts[name] = f"no answer within {TIMEOUT:g} s"
        except Exception as exc:
            parts[name] = f"unavailable ({type(exc).__name__})"
    return parts


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    parts = await check()
    healthy = all(state == "ok" for state in parts.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **parts}, status=200 if healthy else 503
    )
