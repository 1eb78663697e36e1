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
import re
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


StreamEvent = TextDelta | Finish | Usage | Done


class UpstreamError(Exception):
    """A failure with a sentence meant for the user (``reason``) and, when there was one, the status."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class CutOffError(UpstreamError):
    """The stream ended before the server said it was finished."""


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
        logger.warning("Skipped a data payload that is not JSON: %.200r", payload)
        return []
    return parse_chunk(chunk)


def parse_chunk(chunk: Any) -> list[StreamEvent]:
    """Turn one ``chat.completion.chunk`` object into events."""
    if not isinstance(chunk, dict):
        return []
    error = chunk.get("error")
    if error:
        raise UpstreamError(f"The model server reported an error: {error_message(error)}")
    events: list[StreamEvent] = []
    choices = chunk.get("choices") or []
    if choices and isinstance(choices[0], dict):
        choice = choices[0]
        delta = choice.get("delta") or {}
        if isinstance(delta, dict):
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


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def error_message(error: Any) -> str:
    """The human part of an OpenAI-style ``error`` value (an object or a string)."""
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or ""
        return str(message)[:300] or "unknown error"
    return str(error)[:300]


_CONTEXT_LENGTH = re.compile(r"context[_ ]length|context window|maximum context|too many tokens", re.I)


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
                return str(parsed["detail"])[:300]
    if "html" in content_type or text.lstrip().startswith("<"):
        return ""  # never show a proxy's HTML page, not even as text
    return text[:300]


# --- The HTTP client ----------------------------------------------------------------

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def get_client() -> httpx.AsyncClient:
    """The process's pooled client for the running event loop, sized for many concurrent streams."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        for other in [other for other in _clients if other.is_closed()]:
            _clients.pop(other, None)
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.CHAT_CONNECT_TIMEOUT,
                read=settings.CHAT_READ_TIMEOUT,
                write=settings.CHAT_CONNECT_TIMEOUT,
                pool=settings.CHAT_CONNECT_TIMEOUT,
            ),
            limits=httpx.Limits(
                max_connections=settings.CHAT_MAX_CONNECTIONS,
                max_keepalive_connections=settings.CHAT_MAX_CONNECTIONS,
                keepalive_expiry=30,
            ),
        )
        _clients[loop] = client
    return client


async def close_clients() -> None:
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()


RESERVED_FIELDS = frozenset({"model", "messages", "stream", "stream_options"})


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


async def stream_chat(endpoint: Endpoint, request: ChatRequest) -> AsyncIterator[StreamEvent]:
    """Stream a reply as typed events; raise ``UpstreamError`` with a plain reason on any failure.

    Ends normally after ``[DONE]`` or, failing that, once the body ends after a
    ``finish_reason``. A body that ends with neither raises ``CutOffError``.
    """
    url = f"{endpoint.base_url}/chat/completions"
    payload = build_payload(endpoint, request, stream_usage=False)
    finished = False
    try:
        async with get_client().stream("POST", url, json=payload, headers=endpoint.headers()) as response:
            if response.status_code >= 300:
                body = await _read_limited(response)
                raise UpstreamError(
                    describe_status(
                        response.status_code, body, response.headers.get("content-type", ""), response.headers
                    ),
                    status=response.status_code,
                )
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                raise UpstreamError(
                    "The server did not answer with a stream "
                    f"(it sent {content_type.split(';')[0] or 'no content type'}).",
                    status=response.status_code,
                )
            decoder = EventStreamDecoder()
            async for raw in response.aiter_raw():
                for event in decoder.feed(raw):
                    for item in _events_from(event):
                        if isinstance(item, Done):
                            yield item
                            return
                        if isinstance(item, Finish):
                            finished = True
                        yield item
            for event in decoder.end():
                for item in _events_from(event):
                    if isinstance(item, Done):
                        yield item
                        return
                    if isinstance(item, Finish):
                        finished = True
                    yield item
    except UpstreamError:
        raise
    except httpx.ConnectTimeout:
        raise UpstreamError(f"Could not connect to {endpoint.host}: the connection timed out.") from None
    except httpx.ConnectError as exc:
        raise UpstreamError(f"Could not connect to {endpoint.host} ({_short(exc)}).") from None
    except httpx.ReadTimeout:
        raise UpstreamError(
            f"The model server stopped sending for {settings.CHAT_READ_TIMEOUT:g} seconds."
        ) from None
    except httpx.TimeoutException:
        raise UpstreamError(f"The request to {endpoint.host} timed out.") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if not finished:
            raise CutOffError(
                f"The answer was cut off: the connection to {endpoint.host} ended early ({_short(exc)})."
            ) from None
        return
    except httpx.HTTPError as exc:
        raise UpstreamError(f"The request to {endpoint.host} failed ({_short(exc)}).") from None
    if not finished:
        raise CutOffError("The answer was cut off: the stream ended before the model finished.")


def _events_from(event: ServerSentEvent) -> list[StreamEvent]:
    if event.event == "error":
        raise UpstreamError(f"The model server reported an error: {event.data.strip()[:300]}")
    return parse_data(event.data)


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


def fetch_model_ids(endpoint: Endpoint, *, timeout: float = 5.0) -> list[str]:
    """The ids ``GET {base}/models`` lists; an empty list when the server lists none or fails."""
    try:
        response = httpx.get(f"{endpoint.base_url}/models", headers=endpoint.headers(), timeout=timeout)
        if response.status_code != 200:
            return []
        listing = response.json()
    except (httpx.HTTPError, ValueError):
        logger.info("The model list at %s is not available", endpoint.host)
        return []
    entries = listing.get("data") if isinstance(listing, dict) else listing
    if not isinstance(entries, list):
        return []
    ids = [entry.get("id") for entry in entries if isinstance(entry, dict)]
    return sorted({model_id for model_id in ids if isinstance(model_id, str) and model_id})
