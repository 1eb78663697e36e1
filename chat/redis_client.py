"""The one shared Redis of a deployment (limits, login throttling), as the channel layer reaches it.

``REDIS_URL`` names it; with ``REDIS_SENTINELS`` set, the sentinels say which server is the master
at each connection, so a failover needs no restart. Without ``REDIS_URL`` there is none, and
callers fall back to the database.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from django.conf import settings


def connection_kwargs() -> dict[str, object]:
    """What every connection to it takes from ``REDIS_URL`` besides the address."""
    url = urlsplit(settings.REDIS_URL)
    kwargs: dict[str, object] = {"db": int(url.path.lstrip("/") or 0), "socket_timeout": 5}
    if url.password:
        kwargs["password"] = url.password
    if url.username:
        kwargs["username"] = url.username
    return kwargs


def configured() -> bool:
    return bool(settings.REDIS_URL)


def _new_client(*, asynchronous: bool) -> Any:
    if settings.REDIS_SENTINELS:
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel
        from redis.sentinel import Sentinel

        sentinel = (AsyncSentinel if asynchronous else Sentinel)(settings.REDIS_SENTINELS, socket_timeout=5)
        return sentinel.master_for(settings.REDIS_SENTINEL_MASTER, **connection_kwargs())
    return (aioredis.Redis if asynchronous else redis.Redis).from_url(settings.REDIS_URL, socket_timeout=5)


# A client's connections belong to the event loop that opened them: one client per loop.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync: dict[tuple[str, tuple[tuple[str, int], ...], str], redis.Redis] = {}


def client() -> aioredis.Redis:
    """A client for the running loop (connections are pooled); only when ``configured()``."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = _new_client(asynchronous=True)
    return _clients[loop]


def sync_client() -> redis.Redis:
    """A blocking client, for code that runs in a worker thread (inside a database transaction).

    Thread-safe: its connection pool hands each thread its own connection.
    """
    key = (settings.REDIS_URL, tuple(settings.REDIS_SENTINELS), settings.REDIS_SENTINEL_MASTER)
    if key not in _sync:
        _sync[key] = _new_client(asynchronous=False)
    return _sync[key]
