"""The OpenAI-compatible chat completions client.

It turns an HTTP event stream into typed events (text, finish, usage, done)
and every way the call can fail into an ``UpstreamError`` with one
plain-language sentence for the user. One pooled ``httpx.AsyncClient`` serves
a whole worker process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from chat.sse import EventStreamDecoder, ServerSentEvent

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


# --- Typed stream events -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """The model thinking aloud (``reasoning_content``, ``reasoning`` or a leading ``<think>``)."""

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


@dataclass(frozen=True, slots=True)
class Done:
    """``data: [DONE]``: the server says the stream is over."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A ``data:`` payload that is not JSON: left out of the reply, counted."""

    payload: str


@dataclass(frozen=True, slots=True)
class UsageOptionRejected:
    """The server refused ``stream_options`` (400) and the request was sent again without it."""


@dataclass(frozen=True, slots=True)
class Retrying:
    """The request failed before any stream began and will be sent again after ``wait`` seconds."""

    reason: str
    wait: float


StreamEvent = TextDelta | ReasoningDelta | Finish | Usage | Done | Skipped | UsageOptionRejected | Retrying


class UpstreamError(Exception):
    """A failure with a sentence meant for the user (``reason``) and, when there was one, the status."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class CutOffError(UpstreamError):
    """The stream ended before the server said it was finished."""


class ConnectFailure(UpstreamError):
    """No answer at all: nothing reached the model, so asking again is safe."""


# --- Parsing -----------------------------------------------------------------------


def parse_data(payload: str) -> list[StreamEvent]:
    """Parse one event's data into stream events.

    A payload that is not JSON but holds several lines is parsed line by line:
    Arcee's documented example puts ``data:`` lines back to back with no blank
    line between them, which the event-stream rules join into one event.
    """
    payload = payload.strip()
    if payload == "[DONE]":
        return [Done()]
    if not payload:
        return []
    try:
        chunk = json.loads(payload)
    except ValueError:
        if "\n" in payload:
            return [event for line in payload.split("\n") for event in parse_data(line)]
        return [Skipped(payload)]
    return parse_chunk(chunk)


def parse_chunk(chunk: Any) -> list[StreamEvent]:
    """Turn one ``chat.completion.chunk`` object into events; an error object raises ``UpstreamError``.

    Errors come as ``{"error": {...}}`` (OpenAI, llama.cpp, LiteLLM, newer vLLM), as
    ``{"error": "text"}``, or as a top-level ``{"object": "error", "message": ...}`` (older vLLM).
    """
    if not isinstance(chunk, dict):
        return []
    error = chunk.get("error")
    if error:
        raise UpstreamError(stream_error_reason(error))
    if chunk.get("object") == "error":
        raise UpstreamError(stream_error_reason(chunk))
    events: list[StreamEvent] = []
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in ("reasoning_content", "reasoning"):
                reasoning = delta.get(key)
                if isinstance(reasoning, str) and reasoning:
                    events.append(ReasoningDelta(reasoning))
                    break
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(TextDelta(content))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            events.append(Finish(reason))
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        events.append(
            Usage(
                prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
                completion_tokens=_int_or_none(usage.get("completion_tokens")),
                total_tokens=_int_or_none(usage.get("total_tokens")),
            )
        )
    return events


def stream_error_reason(error: Any) -> str:
    """The sentence for an error the server sent inside the stream, with its code when it gave one."""
    code = error.get("code") if isinstance(error, dict) else None
    suffix = f" (code {code})" if isinstance(code, int | str) and not isinstance(code, bool) and code else ""
    return f"The model server reported an error{suffix}: {error_message(error)}"


class ThinkTags:
    """Route a ``<think>...</think>`` block at the very start of the content to the reasoning.

    Models served without a reasoning parser (llama.cpp, Ollama, vLLM by default) put their
    thinking in the content between these tags. The tags may be split across chunks, so text
    that could still turn out to be a tag is held back until the next chunk decides it.
    """

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._state = "start"  # start -> thinking -> after -> content
        self._buffer = ""

    @property
    def deciding(self) -> bool:
        """False once the rest of the content is plain text."""
        return self._state != "content"

    def feed(self, text: str) -> list[StreamEvent]:
        if self._state == "content":
            return [TextDelta(text)]
        self._buffer += text
        events: list[StreamEvent] = []
        while self._buffer:
            if self._state == "start":
                stripped = self._buffer.lstrip()
                if stripped.startswith(self.OPEN):
                    self._buffer, self._state = stripped[len(self.OPEN) :], "thinking"
                elif self.OPEN.startswith(stripped):
                    break  # only whitespace or part of "<think>" so far
                else:
                    self._state = "content"
            elif self._state == "thinking":
                end = self._buffer.find(self.CLOSE)
                if end >= 0:
                    if end:
                        events.append(ReasoningDelta(self._buffer[:end]))
                    self._buffer, self._state = self._buffer[end + len(self.CLOSE) :], "after"
                    continue
                keep = _partial_suffix(self._buffer, self.CLOSE)
                if len(self._buffer) > keep:
                    events.append(ReasoningDelta(self._buffer[: len(self._buffer) - keep]))
                    self._buffer = self._buffer[len(self._buffer) - keep :]
                break
            elif self._state == "after":
                self._buffer = self._buffer.lstrip()  # the blank line between thinking and answer
                if self._buffer:
                    self._state = "content"
            else:
                events.append(TextDelta(self._buffer))
                self._buffer = ""
        return events

    def end(self) -> list[StreamEvent]:
        """What is still held when the stream ends."""
        held, self._buffer = self._buffer, ""
        if not held:
            return []
        return [ReasoningDelta(held)] if self._state == "thinking" else [TextDelta(held)]


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that is a beginning of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def error_message(error: Any) -> str:
    """The human part of an OpenAI-style ``error`` value (an object or a string)."""
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or ""
        return str(message)[:300] or "unknown error"
    return str(error)[:300]


_CONTEXT_LENGTH = re.compile(
    r"context[_ ]length|context window|context size|maximum context|too many tokens", re.I
)


def describe_status(
    status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
) -> str:
    """One sentence for a non-2xx answer, using the server's own message when it sent one."""
    detail = _body_detail(body, content_type)
    if status in (401, 403):
        sentence = f"The API key was rejected ({status})."
    elif status == 404:
        sentence = "The model or the API address was not found (404)."
    elif status == 429:
        wait = retry_after_seconds(headers or {})
        when = f"Try again in {_duration(wait)}." if wait is not None else "Try again shortly."
        sentence = f"The model server is rate limiting requests (429). {when}"
    elif status == 400 and _CONTEXT_LENGTH.search(f"{detail} {body[:2000]!r}"):
        sentence = "The conversation is too long for this model's context window (400)."
    elif status == 400:
        sentence = "The model server refused the request (400)."
    elif status == 408:
        sentence = "The model server timed out waiting for the request (408)."
    elif status == 413:
        sentence = "The request was too large for the model server (413)."
    elif status == 422:
        sentence = "The model server could not process the request (422)."
    elif status >= 500:
        sentence = f"The model server had an error ({status})."
    else:
        sentence = f"The model server answered with status {status}."
    return f"{sentence} {detail}".strip() if detail else sentence


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """How long the server asks us to wait: ``retry-after-ms``, or ``Retry-After`` seconds or date."""
    lowered = {key.lower(): value for key, value in headers.items()}
    if (ms := lowered.get("retry-after-ms", "").strip()) and _is_number(ms):
        return max(0.0, float(ms) / 1000)
    value = lowered.get("retry-after", "").strip()
    if not value:
        return None
    if _is_number(value):
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _is_number(value: str) -> bool:
    try:
        return float(value) >= 0
    except ValueError:
        return False


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minutes"


def _fastapi_detail(detail: Any) -> str:
    """FastAPI's ``detail``: a string, or a list of validation errors each with a ``msg``."""
    if isinstance(detail, list):
        messages = [
            f"{'.'.join(map(str, item.get('loc', [])[1:]))}: {item['msg']}".lstrip(": ")
            for item in detail
            if isinstance(item, dict) and isinstance(item.get("msg"), str)
        ]
        if messages:
            return "; ".join(messages)
    return detail if isinstance(detail, str) else json.dumps(detail)


def _body_detail(body: bytes, content_type: str) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return ""
    if "json" in content_type or text[:1] in "{[":
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            if "error" in parsed:
                return error_message(parsed["error"])
            if "detail" in parsed:
                return _fastapi_detail(parsed["detail"])[:300]
    if "html" in content_type or text.lstrip().startswith("<"):
        return ""  # never show a proxy's HTML page, not even as text
    return text[:300]


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
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=connect, read=None, write=connect, pool=connect),
            limits=httpx.Limits(
                max_connections=settings.CHAT_MAX_CONNECTIONS,
                max_keepalive_connections=settings.CHAT_MAX_CONNECTIONS,
                keepalive_expiry=30,
            ),
        )
        _clients[loop] = client
    return client


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

    def next_read_by(self, *, started: bool) -> float:
        if not started:
            return self.first_token_by
        return min(self.deadline, asyncio.get_running_loop().time() + settings.CHAT_STALL_TIMEOUT)

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


async def _read_stream(
    response: httpx.Response, endpoint: Endpoint, limits: _Limits
) -> AsyncIterator[StreamEvent]:
    decoder = EventStreamDecoder()
    think = ThinkTags()
    chunks = response.aiter_raw()
    finished = started = False
    while True:
        try:
            async with asyncio.timeout_at(limits.next_read_by(started=started)):
                raw = await anext(chunks, None)
        except TimeoutError:
            raise limits.expired(started=started) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if finished:
                break
            raise CutOffError(
                f"The answer was cut off: the connection to {endpoint.host} ended early ({_short(exc)})."
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"The request to {endpoint.host} failed ({_short(exc)}).") from None
        events = decoder.feed(raw) if raw is not None else decoder.end()
        for sse in events:
            for item in _events_from(sse):
                # Once the content is known not to open with <think>, text passes straight through.
                items = think.feed(item.text) if isinstance(item, TextDelta) and think.deciding else (item,)
                for event in items:
                    if isinstance(event, Done):
                        for held in think.end():
                            yield held
                        return
                    if isinstance(event, Finish):
                        finished = True
                    elif isinstance(event, TextDelta | ReasoningDelta):
                        started = True
                    yield event
        if raw is None:
            break
    for held in think.end():
        yield held
    if not finished:
        raise CutOffError("The answer was cut off: the stream ended before the model finished.")


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


# --- Models ------------------------------------------------------------------------------


class ModelListError(Exception):
    """The server's model list could not be read; ``reason`` is one sentence for the admin."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def list_model_ids(endpoint: Endpoint, *, timeout: float = 5.0) -> list[str]:
    """``GET {base}/models``, sorted ids; ``ModelListError`` with a plain sentence when it fails."""
    try:
        response = httpx.get(f"{endpoint.base_url}/models", headers=endpoint.headers(), timeout=timeout)
    except httpx.TimeoutException:
        raise ModelListError(f"{endpoint.host} did not answer within {timeout:g} seconds.") from None
    except httpx.HTTPError as exc:
        raise ModelListError(
            f"Could not connect to {endpoint.host} ({str(exc)[:200] or type(exc).__name__})."
        ) from None
    if response.status_code != 200:
        content_type = response.headers.get("content-type", "")
        raise ModelListError(
            describe_status(response.status_code, response.content[:65536], content_type, response.headers)
        )
    try:
        listing = response.json()
    except ValueError:
        raise ModelListError("The server's model list is not JSON.") from None
    entries = listing.get("data") if isinstance(listing, dict) else listing
    if not isinstance(entries, list):
        raise ModelListError("The server's answer holds no model list.")
    ids = {entry.get("id") for entry in entries if isinstance(entry, dict)}
    return sorted(model_id for model_id in ids if isinstance(model_id, str) and 0 < len(model_id) <= 200)


def fetch_model_ids(endpoint: Endpoint, *, timeout: float = 5.0) -> list[str]:
    """The ids ``GET {base}/models`` lists; an empty list when the server lists none or fails."""
    try:
        return list_model_ids(endpoint, timeout=timeout)
    except ModelListError as exc:
        logger.info("The model list at %s is not available: %s", endpoint.host, exc.reason)
        return []
