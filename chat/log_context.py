"""Log lines that say which request and which message they are about.

Context variables carry the ids: the HTTP middleware sets a request id per request (the proxy's
``X-Request-ID`` when it sends a sane one, else a new one, echoed in the response), the socket sets
one per frame it receives, and a reply's generation sets its own (the one sent upstream) with the
reply's message id. ``ContextFilter`` puts them on every record, and ``JsonFormatter`` writes one
JSON object per line for log collectors (``CHAT_LOG_FORMAT=json``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
message_id: contextvars.ContextVar[str] = contextvars.ContextVar("message_id", default="-")

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_request_id() -> str:
    return secrets.token_hex(8)


def bind(*, request: str | None = None, message: int | str | None = None) -> None:
    """Say, for what runs from here in this context, which request and message it serves."""
    if request is not None:
        request_id.set(request)
    if message is not None:
        message_id.set(str(message))


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.message_id = message_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "message_id": getattr(record, "message_id", "-"),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def _incoming(request: HttpRequest) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _SANE_ID.fullmatch(given) else new_request_id()


@sync_and_async_middleware
def request_ids(get_response: Callable) -> Callable:
    """Give each HTTP request an id for its log lines, and return it as ``X-Request-ID``."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            rid = _incoming(request)
            bind(request=rid, message="-")
            response: Awaitable[HttpResponse] = get_response(request)
            answer = await response
            answer["X-Request-ID"] = rid
            return answer

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            rid = _incoming(request)
            bind(request=rid, message="-")
            answer = get_response(request)
            answer["X-Request-ID"] = rid
            return answer

    return middleware
