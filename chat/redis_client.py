"""The one shared Redis of a deployment (limits, login throttling, the channel layer).

``REDIS_URL`` names it; with ``REDIS_SENTINELS`` set, the sentinels say which server is the master,
so a failover needs no restart. Without ``REDIS_URL`` there is none, and callers fall back to the
database.

redis-py's own Sentinel support falls short of a failover in two ways, which the classes here fix:

- It asks the sentinels only when it opens a connection. After a failover that left the old
  master running (``SENTINEL FAILOVER``, a network split), pooled connections go on writing to it
  until the sentinels make it a replica, eight seconds or more later, and whatever they wrote is
  then lost. ``MasterPool`` asks again at most once a second as it hands out connections, and
  closes those to a server that is no longer the master.
- Concurrent lookups reorder the shared list of sentinels while they walk it, so while one sentinel
  is down most of a burst of new connections find "no master" (and each retries a refused sentinel
  for seconds). Here each lookup walks a copy, and a sentinel that does not answer is passed over
  at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

# How long one sentinel may take to answer before the next one is asked.
SENTINEL_TIMEOUT = 2.0
# How often a pool handing out connections checks that its master is still the master.
MASTER_CHECK_SECONDS = 1.0

Address = tuple[str, int]


def connection_kwargs() -> dict[str, object]:
    """What every connection to it takes from ``REDIS_URL`` besides the address."""
    url = urlsplit(settings.REDIS_URL)
    kwargs: dict[str, object] = {"db": int(url.path.lstrip("/") or 0), "socket_timeout": 5}
    if url.password:
        kwargs["password"] = unquote(url.password)
    if url.username:
        kwargs["username"] = unquote(url.username)
    if url.scheme == "rediss":
        kwargs["ssl"] = True
    return kwargs


def configured() -> bool:
    return bool(settings.REDIS_URL)


def _master_address(manager: Any, state: dict | None, service_name: str) -> Address | None:
    """The master's address in one sentinel's answer, if that sentinel vouches for it."""
    if not state or not manager.check_master_state(state, service_name):
        return None
    ip = manager._force_master_ip if manager._force_master_ip is not None else state["ip"]
    return ip, state["port"]


def _prefer(sentinels: list[Any], answered: Any) -> None:
    """Ask the sentinel that answered first next time (one assignment: no lookup sees a duplicate)."""
    sentinels[:] = [answered, *(other for other in sentinels if other is not answered)]


class SyncSentinels(Sentinel):
    """redis-py's ``Sentinel`` with a lookup that concurrent threads cannot derail."""

    def discover_master(self, service_name: str) -> Address:
        errors = []
        for sentinel in list(self.sentinels):
            try:
                masters = sentinel.sentinel_masters()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                errors.append(repr(exc))
                continue
            if address := _master_address(self, masters.get(service_name), service_name):
                _prefer(self.sentinels, sentinel)
                return address
        raise MasterNotFoundError(
            f"No master found for {service_name!r}: {', '.join(errors) or 'none known'}"
        )


class AsyncSentinels(AsyncSentinel):
    """redis-py's asyncio ``Sentinel`` with a lookup that concurrent tasks cannot derail."""

    async def discover_master(self, service_name: str) -> Address:
        errors = []
        for sentinel in list(self.sentinels):
            try:
                masters = await sentinel.sentinel_masters()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                errors.append(repr(exc))
                continue
            if address := _master_address(self, masters.get(service_name), service_name):
                _prefer(self.sentinels, sentinel)
                return address
        raise AsyncMasterNotFoundError(
            f"No master found for {service_name!r}: {', '.join(errors) or 'none known'}"
        )


class SyncMasterPool(SentinelConnectionPool):
    """Connections to whichever server is the master now (its ``release`` drops any other)."""

    _checked_at = float("-inf")

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() - self._checked_at >= MASTER_CHECK_SECONDS:
            self._checked_at = time.monotonic()
            # A changed answer closes the idle connections; none found: connecting will say so.
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self.get_master_address()
        return super().get_connection(*args, **kwargs)


class MasterPool(AsyncSentinelPool):
    """Connections to whichever server is the master now."""

    _checked_at = float("-inf")

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() - self._checked_at >= MASTER_CHECK_SECONDS:
            self._checked_at = time.monotonic()
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                await self.get_master_address()
        return await super().get_connection(*args, **kwargs)

    async def release(self, connection: Any) -> None:
        # A connection that was busy (a blocking read) when the master changed goes back closed.
        if self.master_address is not None and (connection.host, connection.port) != self.master_address:
            await connection.disconnect()
        await super().release(connection)


def sentinel_kwargs(*, asynchronous: bool) -> dict[str, object]:
    """How each sentinel is asked: briefly, and once (the next one is asked instead)."""
    retry = AsyncRetry(NoBackoff(), 0) if asynchronous else Retry(NoBackoff(), 0)
    return {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT, "retry": retry}


class SentinelChannelLayer(RedisChannelLayer):
    """channels_redis's layer, reaching the master through ``AsyncSentinels`` and ``MasterPool``.

    Takes the same ``hosts`` entries (``{"master_name": ..., "sentinels": [...], ...}``).
    """

    def create_pool(self, index: int) -> aioredis.ConnectionPool:
        host = dict(self.hosts[index])
        if "master_name" not in host:
            return super().create_pool(index)
        asked = {**(host.pop("sentinel_kwargs", None) or {}), **sentinel_kwargs(asynchronous=True)}
        sentinels = AsyncSentinels(host.pop("sentinels"), sentinel_kwargs=asked)
        return MasterPool(host.pop("master_name"), sentinels, **host)


def _new_client(*, asynchronous: bool) -> Any:
    if settings.REDIS_SENTINELS:
        sentinels = (AsyncSentinels if asynchronous else SyncSentinels)(
            settings.REDIS_SENTINELS, sentinel_kwargs=sentinel_kwargs(asynchronous=asynchronous)
        )
        return sentinels.master_for(
            settings.REDIS_SENTINEL_MASTER,
            connection_pool_class=MasterPool if asynchronous else SyncMasterPool,
            **connection_kwargs(),
        )
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
