"""``/healthz`` for load balancers: whether this worker can reach its database and channel layer.

200 with ``{"status": "ok", ...}`` when both answer, 503 naming what failed otherwise. The channel
layer is checked by a real round trip (a message sent to a fresh channel and received back), so
a Redis that accepts connections but cannot relay counts as down. ``?upstream=1`` also asks the
default upstream for its model list and reports the answer; ``?upstream=required`` makes a
failing upstream a 503 too (a balancer should not use it: one slow provider would take every
worker out of rotation). No login; nothing secret, no host names and no error texts in the
answer, only a short reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from chat.providers import default_endpoint
from chat.upstream.listing import ModelListError, list_models

TIMEOUT = 2.0
OK = "ok"
UPSTREAM_CHOICES = {"": None, "0": None, "1": "report", "required": "require"}


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


class UpstreamDown(Exception):
    """The upstream answered, but not with a model list."""


def _upstream() -> None:
    try:
        list_models(default_endpoint(), timeout=TIMEOUT)
    except ModelListError:
        # Its sentence names the host and may quote the server: neither belongs in a public answer.
        raise UpstreamDown from None


async def _probe(check: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(check(), TIMEOUT)
    except TimeoutError:
        return f"no answer within {TIMEOUT:g} s"
    except UpstreamDown:
        return "unavailable (no model list)"
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})"
    return OK


async def check(*, upstream: bool = False) -> dict[str, str]:
    """Each part's state, "ok" or a short reason; the parts are asked at once."""
    probes: dict[str, Callable[[], Awaitable[None]]] = {
        "database": database_sync_to_async(_database),
        "channel_layer": _channel_layer,
    }
    if upstream:
        probes["upstream"] = lambda: asyncio.to_thread(_upstream)
    states = await asyncio.gather(*(_probe(probe) for probe in probes.values()))
    return dict(zip(probes, states, strict=True))


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    asked = request.GET.get("upstream", "")
    if asked not in UPSTREAM_CHOICES:
        return JsonResponse(
            {"status": "bad request", "error": "upstream must be 1 (report it) or required (count it)"},
            status=400,
        )
    upstream = UPSTREAM_CHOICES[asked]
    parts = await check(upstream=upstream is not None)
    counted = [state for name, state in parts.items() if name != "upstream" or upstream == "require"]
    healthy = all(state == OK for state in counted)
    return JsonResponse({"status": OK if healthy else "unavailable", **parts}, status=200 if healthy else 503)
