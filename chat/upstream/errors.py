"""Every way a chat request can fail, in one plain sentence for the user.

Statuses, the server's own message from its body (OpenAI, FastAPI or plain text; never HTML),
errors sent inside a stream, and how long a rate-limited server asks us to wait.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from chat.storable import storable


class UpstreamError(Exception):
    """A failure with a sentence meant for the user (``reason``) and, when there was one, the status."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        reason = storable(reason)  # the server's own words are part of it, and it is stored
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class CutOffError(UpstreamError):
    """The stream ended before the server said it was finished."""


class ConnectFailure(UpstreamError):
    """No answer at all: nothing reached the model, so asking again is safe."""


def stream_error_reason(error: Any) -> str:
    """The sentence for an error the server sent inside the stream, with its code when it gave one."""
    code = error.get("code") if isinstance(error, dict) else None
    suffix = f" (code {code})" if isinstance(code, int | str) and not isinstance(code, bool) and code else ""
    return f"The model server reported an error{suffix}: {error_message(error)}"


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
