"""The pooled HTTP client: requests, retries before a stream begins, time limits, reading the stream.

One ``httpx.AsyncClient`` serves a whole worker process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

from chat.sse import EventStreamDecoder, ServerSentEvent
from chat.upstream.errors import (
    ConnectFailure,
    CutOffError,
    UpstreamError,
    describe_status,
    retry_after_seconds,
    stream_error_reason,
)
from chat.upstream.events import (
    Done,
    Finish,
    ReasoningDelta,
    Retrying,
    StreamEvent,
    StreamTexts,
    TextDelta,
    UsageOptionRejected,
    parse_data,
)
from chat.upstream.network import AsyncioBackend

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where replies come from: a base URL such as ``https://api.arcee.ai/api/v1`` and its key.

    ``provider_id`` is None for the server the environment configures. The key is left out of
    ``repr`` so that no log line can carry it.
    """

    base_url: str
    api_key: str = field(default="", repr=False)
    demo: bool = False
    provider_id: int | None = None
    name: str = ""
    extra_fields: Mapping[str, Any] = field(default_factory=dict)
    stream_usage: bool = True  # send stream_options.include_usage

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc or self.base_url

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What one reply asks for; temperature and max tokens are sent only when set."""

    model: str
    messages: list[dict[str, str]]
    temperature: float | None = None
    max_tokens: int | None = None


# --- The HTTP client ----------------------------------------------------------------

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def get_client() -> httpx.AsyncClient:
    """The worker's pooled client (one per event loop), sized for many concurrent streams.

    HTTP/1.1 with keep-alive: every provider speaks it, and a stream per connection keeps one
    slow reply from holding up others. Reads have no httpx timeout: ``stream_chat`` applies the
    first-token, stall and deadline limits itself.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        for other in [other for other in _clients if other.is_closed()]:
            _clients.pop(other, None)
        connect = settings.CHAT_CONNECT_TIMEOUT
        limits = httpx.Limits(
            max_connections=settings.CHAT_MAX_CONNECTIONS,
            max_keepalive_connections=settings.CHAT_MAX_CONNECTIONS,
            keepalive_expiry=30,
        )
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=connect, read=None, write=connect, pool=connect),
            limits=limits,
            transport=_transport(limits),
        )
        _clients[loop] = client
    return client


_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def _transport(
    limits: httpx.Limits, *, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncHTTPTransport | None:
    """httpx's transport on the plain-asyncio network backend (``chat.upstream.network``).

    None (httpx's own, on anyio) when the environment names a proxy: httpx applies proxies from
    the environment only to transports it makes itself.
    """
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context or httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
    return transport


async def close_clients() -> None:
    """Close this loop's client and its connections (on shutdown)."""
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()


RESERVED_FIELDS = frozenset({"model", "messages", "stream", "stream_options"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def build_payload(endpoint: Endpoint, request: ChatRequest, *, stream_usage: bool) -> dict[str, Any]:
    """The JSON body: the provider's extra fields, then the request (options only when set)."""
    payload = {key: value for key, value in endpoint.extra_fields.items() if key not in RESERVED_FIELDS}
    payload.update(model=request.model, messages=request.messages, stream=True)
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.max_tokens is not None:
        payload["max_tokens"] = request.max_tokens
    if stream_usage:
        payload["stream_options"] = {"include_usage": True}
    return payload


@dataclass
class _Limits:
    """When the reply must have started, and when it must be over (event-loop times)."""

    first_token_by: float
    deadline: float

    @classmethod
    def starting_now(cls) -> _Limits:
        now = asyncio.get_running_loop().time()
        deadline = now + settings.CHAT_REPLY_DEADLINE
        return cls(first_token_by=min(deadline, now + settings.CHAT_FIRST_TOKEN_TIMEOUT), deadline=deadline)

    def next_read_by(self, *, started: bool, last_read: float) -> float:
        """When the next chunk must have come: the first token's limit, then a stall after the last."""
        if not started:
            return self.first_token_by
        return min(self.deadline, last_read + settings.CHAT_STALL_TIMEOUT)

    def expired(self, *, started: bool) -> UpstreamError:
        loop_time = asyncio.get_running_loop().time()
        if loop_time >= self.deadline - 0.001:
            return UpstreamError(
                f"The reply took longer than the {settings.CHAT_REPLY_DEADLINE:g}-second limit."
            )
        if not started:
            return UpstreamError(
                f"The model did not start answering within {settings.CHAT_FIRST_TOKEN_TIMEOUT:g} seconds."
            )
        return UpstreamError(f"The model server stopped sending for {settings.CHAT_STALL_TIMEOUT:g} seconds.")


class _UsageOptionRefused(Exception):
    pass


async def stream_chat(
    endpoint: Endpoint, request: ChatRequest, *, request_id: str = ""
) -> AsyncIterator[StreamEvent]:
    """Stream a reply as typed events; raise ``UpstreamError`` with a plain reason on any failure.

    Before anything is read from a stream, connection failures and 429/502/503/504 are retried
    (``CHAT_RETRIES`` times, waiting as ``Retry-After`` asks, up to ``CHAT_RETRY_MAX_WAIT``);
    once a stream has begun nothing is retried, so no text can arrive twice. Ends normally after
    ``[DONE]`` or, failing that, once the body ends after a ``finish_reason``; a body that ends
    with neither raises ``CutOffError``.
    """
    limits = _Limits.starting_now()
    stream_usage = endpoint.stream_usage
    attempt = 0
    while True:
        try:
            response = await _open(
                endpoint, request, stream_usage=stream_usage, request_id=request_id, limits=limits
            )
        except _UsageOptionRefused:
            logger.info(
                "Request %s: %s refused stream_options; sending without it", request_id, endpoint.host
            )
            stream_usage = False
            yield UsageOptionRejected()
            continue
        except UpstreamError as exc:
            wait = _retry_wait(exc, attempt)
            if wait is None or asyncio.get_running_loop().time() + wait >= limits.first_token_by:
                raise
            attempt += 1
            logger.info("Request %s: retry %d in %.1f s after: %s", request_id, attempt, wait, exc.reason)
            yield Retrying(exc.reason, wait)
            await asyncio.sleep(wait)
            continue
        break
    try:
        async for event in _read_stream(response, endpoint, limits):
            yield event
    finally:
        await response.aclose()


def _retry_wait(exc: UpstreamError, attempt: int) -> float | None:
    """Seconds to wait before asking again, or None when this failure is not worth retrying."""
    if attempt >= settings.CHAT_RETRIES:
        return None
    if not isinstance(exc, ConnectFailure) and exc.status not in RETRY_STATUSES:
        return None
    if exc.retry_after is not None:
        wait = exc.retry_after
    else:
        wait = settings.CHAT_RETRY_BACKOFF * 2**attempt * random.uniform(1.0, 1.25)
    return wait if wait <= settings.CHAT_RETRY_MAX_WAIT else None


async def _open(
    endpoint: Endpoint, request: ChatRequest, *, stream_usage: bool, request_id: str, limits: _Limits
) -> httpx.Response:
    """Send the request and return a response that is a stream, or raise why it is not."""
    client = get_client()
    headers = endpoint.headers()
    if request_id:
        headers["X-Request-ID"] = request_id
    http_request = client.build_request(
        "POST",
        f"{endpoint.base_url}/chat/completions",
        json=build_payload(endpoint, request, stream_usage=stream_usage),
        headers=headers,
    )
    try:
        async with asyncio.timeout_at(limits.first_token_by):
            response = await client.send(http_request, stream=True)
    except TimeoutError:
        raise limits.expired(started=False) from None
    except httpx.HTTPError as exc:
        failure = _request_failure(exc, endpoint)
        logger.warning("Request %s to %s failed: %r", request_id, endpoint.host, exc)
        raise failure from None
    status = response.status_code
    content_type = response.headers.get("content-type", "")
    if status >= 300:
        try:
            async with asyncio.timeout_at(limits.first_token_by):
                body = await _read_limited(response)
        except (TimeoutError, httpx.HTTPError):
            body = b""
        finally:
            await response.aclose()
        if stream_usage and status == 400 and re.search(rb"stream_options|include_usage", body):
            raise _UsageOptionRefused
        logger.warning(
            "Request %s to %s: status %d (upstream id %s): %.500r",
            request_id,
            endpoint.host,
            status,
            _upstream_id(response),
            body,
        )
        raise UpstreamError(
            describe_status(status, body, content_type, response.headers),
            status=status,
            retry_after=retry_after_seconds(response.headers),
        )
    if "text/event-stream" not in content_type:
        await response.aclose()
        logger.warning("Request %s to %s: answered %s, not a stream", request_id, endpoint.host, content_type)
        raise UpstreamError(
            "The server did not answer with a stream "
            f"(it sent {content_type.split(';')[0] or 'no content type'}).",
            status=status,
        )
    logger.debug(
        "Request %s to %s: streaming (upstream id %s)", request_id, endpoint.host, _upstream_id(response)
    )
    return response


class _Watchdog:
    """The first-token, stall and deadline limits of one reply's stream, on one timer.

    A timeout per read would arm and cancel a timer for every chunk. Instead each chunk only
    notes the time (``read``), and the one timer, when it fires, either re-arms itself at the
    next limit or ends the stream: it cancels the read under way (``_read_events`` turns that
    into ``TimeoutError``), or, between reads, marks the limit passed for the next one.
    """

    def __init__(self, limits: _Limits) -> None:
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.started = False  # text or reasoning has come
        self.done = False  # [DONE] has come
        self.reading = False
        self.expired = False
        self.last_read = self.loop.time()
        self._handle = self.loop.call_at(self._due(), self._check)

    def _due(self) -> float:
        return self.limits.next_read_by(started=self.started, last_read=self.last_read)

    def read(self) -> None:
        self.last_read = self.loop.time()

    def _check(self) -> None:
        due = self._due()
        if self.loop.time() < due - 0.001:
            self._handle = self.loop.call_at(due, self._check)
            return
        self.expired = True
        if self.reading and self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        self._handle.cancel()


async def _read_stream(
    response: httpx.Response, endpoint: Endpoint, limits: _Limits
) -> AsyncIterator[StreamEvent]:
    texts = StreamTexts()
    watchdog = _Watchdog(limits)
    finished = False
    try:
        async for event in _read_events(response.aiter_raw(), texts, watchdog):
            if isinstance(event, Finish):
                finished = True
            yield event
    except TimeoutError:
        raise limits.expired(started=watchdog.started) from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if not finished:
            raise CutOffError(
                f"The answer was cut off: the connection to {endpoint.host} ended early ({_short(exc)})."
            ) from None
        for held in texts.end():  # the body broke after the model finished: what it said stands
            yield held
    except httpx.HTTPError as exc:
        raise UpstreamError(f"The request to {endpoint.host} failed ({_short(exc)}).") from None
    else:
        if not finished and not watchdog.done:
            raise CutOffError("The answer was cut off: the stream ended before the model finished.")
    finally:
        watchdog.close()


async def _read_events(
    chunks: AsyncIterator[bytes], texts: StreamTexts, watchdog: _Watchdog
) -> AsyncIterator[StreamEvent]:
    """The events of the body's chunks, up to ``[DONE]`` (``watchdog.done``) or the body's end."""
    decoder = EventStreamDecoder()
    while True:
        if watchdog.expired:
            raise TimeoutError
        watchdog.reading = True
        try:
            raw = await anext(chunks, None)
        except asyncio.CancelledError:
            # The watchdog's cancel, unless a stop asked too (then the stop wins).
            if watchdog.expired and watchdog.task is not None and watchdog.task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            watchdog.reading = False
        watchdog.read()
        events = decoder.feed(raw) if raw is not None else decoder.end()
        for sse in events:
            for item in _events_from(sse):
                for event in texts.feed(item):
                    if isinstance(event, Done):
                        for held in texts.end():
                            yield held
                        watchdog.done = True
                        return
                    if isinstance(event, TextDelta | ReasoningDelta):
                        watchdog.started = True
                    yield event
        if raw is None:
            break
    for held in texts.end():
        yield held


def _events_from(event: ServerSentEvent) -> list[StreamEvent]:
    if event.error:
        raise UpstreamError(f"The model server reported an error: {event.error.strip()[:300]}")
    if event.event == "error":
        try:
            detail = json.loads(event.data)
        except ValueError:
            detail = event.data.strip()
        if isinstance(detail, dict) and "error" in detail:
            detail = detail["error"]
        raise UpstreamError(stream_error_reason(detail) if detail else "The model server reported an error.")
    return parse_data(event.data)


_DNS_FAILURE = re.compile(
    r"name or service not known|nodename nor servname|name resolution|getaddrinfo", re.I
)


def _request_failure(exc: httpx.HTTPError, endpoint: Endpoint) -> UpstreamError:
    """The sentence for a request that got no answer; ``ConnectFailure`` where a retry may help."""
    host = endpoint.host
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectFailure(f"Could not connect to {host}: the connection timed out.")
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamError("Too many replies are being written at once; try again in a moment.")
    if isinstance(exc, httpx.ConnectError):
        if _caused_by(exc, socket.gaierror) or _DNS_FAILURE.search(str(exc)):
            return UpstreamError(f"Could not find the server {host}: its name does not resolve (DNS).")
        if _caused_by(exc, ssl.SSLError) or "SSL" in str(exc) or "certificate" in str(exc).lower():
            return UpstreamError(f"Could not make a secure (TLS) connection to {host} ({_short(exc)}).")
        return ConnectFailure(f"Could not connect to {host} ({_short(exc)}).")
    if isinstance(exc, httpx.RemoteProtocolError):
        return ConnectFailure(f"The connection to {host} closed before any answer came.")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError(f"The request to {host} timed out.")
    return UpstreamError(f"The request to {host} failed ({_short(exc)}).")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _upstream_id(response: httpx.Response) -> str:
    return response.headers.get("x-request-id") or response.headers.get("request-id") or "-"


async def _read_limited(response: httpx.Response, limit: int = 65536) -> bytes:
    body = bytearray()
    async for raw in response.aiter_raw():
        body += raw
        if len(body) >= limit:
            break
    return bytes(body[:limit])


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


async def complete_chat(endpoint: Endpoint, request: ChatRequest, *, seconds: float) -> str:
    """The text of one short non-streaming completion (a side request, such as a title).

    Raises ``UpstreamError`` for anything but an answer with text; the whole call, connection
    included, is bounded by ``seconds``.
    """
    payload = build_payload(endpoint, request, stream_usage=False)
    payload["stream"] = False
    headers = endpoint.headers()
    headers["Accept"] = "application/json"
    try:
        async with asyncio.timeout(seconds):
            response = await get_client().post(
                f"{endpoint.base_url}/chat/completions", json=payload, headers=headers
            )
    except TimeoutError:
        raise UpstreamError(f"{endpoint.host} did not answer within {seconds:g} seconds.") from None
    except httpx.HTTPError as exc:
        raise _request_failure(exc, endpoint) from None
    if response.status_code >= 300:
        raise UpstreamError(
            describe_status(
                response.status_code, response.content[:65536], response.headers.get("content-type", "")
            ),
            status=response.status_code,
        )
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UpstreamError(f"{endpoint.host} answered without a message.") from None
    if isinstance(content, list):  # content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise UpstreamError(f"{endpoint.host} answered without text.")
    return content
