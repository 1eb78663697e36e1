"""An OpenAI-compatible chat completions simulator on a real loopback HTTP/1.1 server.

Tests, benchmarks and the offline demo mode talk to it exactly as they would to a
real provider. It is written on ``asyncio.start_server`` with a small hand-written
HTTP/1.1 parser rather than a framework because fault injection needs byte-level
control of the wire (split UTF-8, bare CR line ends, abrupt closes, stalls), and
because a coroutine per connection keeps 1,000+ concurrent keep-alive streams cheap.

Behaviour is chosen per server (``SimulatorConfig``) or per request, through options
after ``?`` in the model name (``demo?tokens=20&tps=200&fault=status-429``) or a
top-level ``"simulator": {...}`` object in the JSON body, so that tests driving the
app (which only controls the model name) can pick a fault.

Faults (combine with ``+``):

- answers instead of a stream: ``status-<code>``, ``status-400-context``, ``html-status-<code>``,
  ``detail-status-<code>`` (FastAPI ``{"detail": ...}``), ``text-status-<code>`` (a proxy's plain
  text), ``not-sse``, ``reject-stream-options`` (400 when the body has ``stream_options``);
- retries: ``flaky-<code>-<n>`` (the first n requests with this exact model string get the status),
  ``flaky-drop-<n>`` (... get the connection closed without an answer);
- the stream ending early, after n content tokens: ``cut-off-after-<n>``, ``stall-after-<n>``,
  ``error-event-after-<n>``, ``stream-error-<shape>-after-<n>`` (shapes in ``STREAM_ERROR_SHAPES``),
  ``event-error-after-<n>`` (``event: error``), ``error-field-after-<n>`` (an ``error:`` line);
- the stream's content: ``reasoning-<n>`` (``delta.reasoning_content``), ``reasoning-field-<n>``
  (``delta.reasoning``), ``think-<n>`` (a ``<think>`` block, tags split across chunks),
  ``not-json-<n>`` and ``bad-utf8-<n>`` (one broken event after n content tokens, then the rest),
  ``finish-length``, ``finish-content-filter``, ``no-usage``, ``usage-null-choices``, ``no-done``;
- the wire: ``split-bytes``, ``crlf``, ``cr``, ``comments``, ``slow-first-<ms>`` (headers at once,
  first token late), ``slow-headers-<ms>`` (nothing at all until then).

Options besides ``fault``: ``tokens``, ``tps``, ``retry_after`` (the ``Retry-After`` value on 429
and 503 answers, default ``7`` on 429) and ``retry_after_ms`` (a ``retry-after-ms`` header, which
then replaces the default ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

__all__ = [
    "BAD_UTF8_BYTES",
    "BAD_UTF8_TEXT_DECODED",
    "FAULT_NAMES",
    "NOT_JSON_DATA",
    "STREAM_ERROR_MESSAGES",
    "STREAM_ERROR_PAYLOADS",
    "STREAM_ERROR_SHAPES",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "SimulatorThread",
    "reasoning_text",
    "reasoning_tokens",
    "reply_text",
    "reply_tokens",
    "start_simulator",
]

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_REPLY_TOKENS = 1_000_000
_READ_SIZE = 65536
# Sleeps longer than this also watch for the client leaving, so a slow stream stops promptly.
_WATCHED_SLEEP = 0.25
_MODEL_CREATED = 1_700_000_000

FAULT_NAMES = (
    "status-<code>",
    "status-400-context",
    "html-status-<code>",
    "detail-status-<code>",
    "text-status-<code>",
    "not-sse",
    "reject-stream-options",
    "flaky-<code>-<n>",
    "flaky-drop-<n>",
    "cut-off-after-<n>",
    "stall-after-<n>",
    "error-event-after-<n>",
    "stream-error-<shape>-after-<n>",
    "event-error-after-<n>",
    "error-field-after-<n>",
    "reasoning-<n>",
    "reasoning-field-<n>",
    "think-<n>",
    "not-json-<n>",
    "bad-utf8-<n>",
    "finish-length",
    "finish-content-filter",
    "no-usage",
    "usage-null-choices",
    "no-done",
    "split-bytes",
    "crlf",
    "cr",
    "comments",
    "slow-first-<ms>",
    "slow-headers-<ms>",
)
FLAKY_STATUSES = (429, 500, 502, 503, 504)

# In-stream errors as each kind of server sends them; the wire carries them with json.dumps' default
# separators, exactly as written here. "event-error" is the data of an ``event: error`` event and
# "error-field" the text of a bare ``error:`` line.
STREAM_ERROR_MESSAGES = {
    "openai": "The server had an error while processing your request.",
    "vllm": "The model crashed while generating.",
    "vllm2": "The model crashed while generating.",
    "litellm": "litellm.APIConnectionError: Connection reset by peer",
    "llamacpp": "Context size has been exceeded.",
    "string": "Upstream overloaded",
    "event-error": "Model overloaded, try later",
    "error-field": "Model overloaded",
}
_VLLM_ERROR = {
    "object": "error",
    "message": STREAM_ERROR_MESSAGES["vllm"],
    "type": "InternalServerError",
    "param": None,
    "code": 500,
}
STREAM_ERROR_PAYLOADS: dict[str, dict[str, Any]] = {
    "openai": {
        "error": {
            "message": STREAM_ERROR_MESSAGES["openai"],
            "type": "server_error",
            "param": None,
            "code": None,
        }
    },
    "vllm": _VLLM_ERROR,  # top level: older vLLM
    "vllm2": {"error": _VLLM_ERROR},
    "litellm": {
        "error": {"message": STREAM_ERROR_MESSAGES["litellm"], "type": None, "param": None, "code": "500"}
    },
    "llamacpp": {
        "error": {"code": 500, "message": STREAM_ERROR_MESSAGES["llamacpp"], "type": "server_error"}
    },
    "string": {"error": STREAM_ERROR_MESSAGES["string"]},
    "event-error": {"message": STREAM_ERROR_MESSAGES["event-error"]},
}
STREAM_ERROR_SHAPES = ("openai", "vllm", "vllm2", "litellm", "llamacpp", "string")

# ``not-json-<n>``: a JSON object cut short, as a proxy that truncates an event would leave it.
NOT_JSON_DATA = '{"choices": [{"delta": {"content": "unterminated'
# ``bad-utf8-<n>``: extra content whose JSON string holds raw bytes that are not UTF-8.
BAD_UTF8_BYTES = b"ok\xff\xfe!"
BAD_UTF8_TEXT_DECODED = BAD_UTF8_BYTES.decode("utf-8", errors="replace")  # "ok\ufffd\ufffd!"


@dataclass(frozen=True)
class SimulatorConfig:
    """Server-wide defaults; requests may override the pace, the length and the fault."""

    tokens_per_second: float = 50.0  # 0 or less: as fast as possible, no sleeping
    reply_tokens: int = 40
    fault: str = ""
    api_key: str = ""  # when set, requests need ``Authorization: Bearer <api_key>``
    list_models: bool = True  # False: ``GET /v1/models`` answers 404, to exercise fallbacks
    models: tuple[str, ...] = ("demo",)


@dataclass
class SimulatorStats:
    """Counters for tests to check what reached the server.

    Mutated only on the simulator's event loop; plain int reads from other threads are safe.
    A stream is *completed* when it reached the end its fault planned (a cut-off counts), and
    *aborted* when the client went away first (including during a stall).
    """

    connections: int = 0
    requests: int = 0
    chat_requests: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_aborted: int = 0
    rejected_stream_options: int = 0  # 400s from ``reject-stream-options``
    last_chat_body: dict[str, Any] | None = None
    last_headers: dict[str, str] = field(default_factory=dict)

    @property
    def active_streams(self) -> int:
        return self.streams_started - self.streams_completed - self.streams_aborted


# --- The reply ---------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*\S+")
_QUOTE_CHARS = 60
_FILLER = (
    "The simulator streams its replies a word at a time, at a steady pace, so you can watch an answer "
    "arrive. It does not understand your message; it only repeats the start of it. To talk to a real "
    "model, set CHAT_API_BASE and CHAT_API_KEY and restart the server — until then, the rest of the app "
    "works as usual."
)
_FILLER_TOKENS = tuple(_TOKEN_RE.findall("\n\n" + _FILLER))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI "content parts"
        return " ".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def reply_tokens(messages: list[dict], count: int) -> list[str]:
    """The demo reply as exactly ``count`` word pieces (each with its leading whitespace).

    Deterministic so tests can compare the streamed text exactly; it says plainly that no model
    is connected, because this is what a person trying the app offline reads. The curly quotes
    and the dash put multi-byte UTF-8 on the wire early.
    """
    if count <= 0:
        return []
    said = " ".join(_last_user_text(messages).split())
    if len(said) > _QUOTE_CHARS:
        said = said[: _QUOTE_CHARS - 1].rstrip() + "…"
    echo = f"You wrote: “{said}”." if said else "Your message was empty."
    intro = (
        "This is the offline demo: no language model is connected, so the built-in simulator is answering. "
        + echo
    )
    tokens = _TOKEN_RE.findall(intro)[:count]
    filler = itertools.cycle(_FILLER_TOKENS)
    while len(tokens) < count:
        tokens.append(next(filler))
    return tokens


def reply_text(messages: list[dict], count: int) -> str:
    """The text that ``reply_tokens`` streams, for comparing with what a client assembled."""
    return "".join(reply_tokens(messages, count))


_REASONING = (
    "Let me think about this. No language model is connected, so these thoughts are the simulator's "
    "stand-in: a fixed passage streamed before the answer, so the app can show thinking apart from the "
    "reply — and prove that it does."
)
_REASONING_TOKENS = tuple(_TOKEN_RE.findall(_REASONING))
_REASONING_AGAIN = tuple(_TOKEN_RE.findall(" " + _REASONING))


def reasoning_tokens(count: int) -> list[str]:
    """The reasoning streamed by ``reasoning-<n>``, ``reasoning-field-<n>`` and ``think-<n>``, as n pieces.

    Deterministic and independent of the messages, so tests can compare what a client collected
    as "thinking"; the dash puts multi-byte UTF-8 in it too.
    """
    if count <= 0:
        return []
    tokens = list(_REASONING_TOKENS[:count])
    again = itertools.cycle(_REASONING_AGAIN)
    while len(tokens) < count:
        tokens.append(next(again))
    return tokens


def reasoning_text(count: int) -> str:
    """The text that ``reasoning_tokens`` streams, for comparing with what a client assembled."""
    return "".join(reasoning_tokens(count))


def _think_pieces(count: int) -> list[str]:
    """``<think>``, the reasoning, ``</think>`` and a blank line, with both tags cut across chunks.

    A client that looks for a whole tag in one chunk misses them; one that buffers finds them.
    """
    reasoning = reasoning_tokens(count)
    if not reasoning:
        return ["<thi", "nk></th", "ink>\n\n"]
    pieces = ["<thi", "nk>" + reasoning[0], *reasoning[1:]]
    pieces[-1] += "</th"
    pieces.append("ink>\n\n")
    return pieces


def _prompt_tokens(messages: list[dict]) -> int:
    return sum(len(_content_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


# --- Per-request plan: options and faults ------------------------------------------------------------


class _HttpError(Exception):
    """An error answered as an OpenAI-style JSON body; ``close`` when the request framing is unusable."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | int | None = None,
        close: bool = False,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.close = close
        self.headers = headers or {}
        self.body = body  # sent as is instead of the OpenAI-style error, for other servers' shapes
        self.content_type = content_type


@dataclass
class _Plan:
    tokens: int
    tps: float
    status: int | None = None
    context_length: bool = False  # with status 400: OpenAI's "maximum context length" answer
    html_status: int | None = None
    detail_status: int | None = None
    text_status: int | None = None
    not_sse: bool = False
    reject_stream_options: bool = False
    flaky_status: tuple[int, int] | None = None  # (status, how many requests get it)
    flaky_drop: int | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    cut_off_after: int | None = None
    stall_after: int | None = None
    error_after: int | None = None
    stream_error: tuple[int, str] | None = None  # (after n tokens, key of STREAM_ERROR_MESSAGES)
    reasoning_key: str = "reasoning_content"
    reasoning: int = 0
    think: int | None = None
    not_json_after: int | None = None
    bad_utf8_after: int | None = None
    finish_reason: str = "stop"
    no_usage: bool = False
    usage_null_choices: bool = False
    no_done: bool = False
    split_bytes: bool = False
    newline: str = "\n"
    comments: bool = False
    slow_first_ms: int = 0
    slow_headers_ms: int = 0

    def early_end(self) -> tuple[int, str] | None:
        """(content tokens to send, how it ends) when a fault ends the stream early.

        The end is "cut-off", "stall", "error" (``error-event-after``) or "stream-error" (the others).
        The smallest count wins; on a tie cut-off beats stall beats the error event beats the rest.
        """
        candidates = [
            (n, kind)
            for n, kind in (
                (self.cut_off_after, "cut-off"),
                (self.stall_after, "stall"),
                (self.error_after, "error"),
                (self.stream_error[0] if self.stream_error else None, "stream-error"),
            )
            if n is not None
        ]
        return min(candidates, key=lambda item: item[0]) if candidates else None


_FAULT_FLAGS = {
    "not-sse": ("not_sse", True),
    "reject-stream-options": ("reject_stream_options", True),
    "no-done": ("no_done", True),
    "split-bytes": ("split_bytes", True),
    "crlf": ("newline", "\r\n"),
    "cr": ("newline", "\r"),
    "comments": ("comments", True),
    "finish-length": ("finish_reason", "length"),
    "finish-content-filter": ("finish_reason", "content_filter"),
    "no-usage": ("no_usage", True),
    "usage-null-choices": ("usage_null_choices", True),
}
_FAULT_WITH_NUMBER = re.compile(
    r"(?P<kind>status|html-status|detail-status|text-status|cut-off-after|stall-after|error-event-after"
    r"|event-error-after|error-field-after|stream-error-(?P<shape>[a-z0-9]+)-after|reasoning|reasoning-field"
    r"|think|not-json|bad-utf8|flaky-(?P<flaky>drop|\d{1,3})|slow-first|slow-headers)-(?P<number>\d{1,9})"
)
# Faults whose number is simply stored on the plan.
_NUMBER_FIELDS = {
    "cut-off-after": "cut_off_after",
    "stall-after": "stall_after",
    "error-event-after": "error_after",
    "not-json": "not_json_after",
    "bad-utf8": "bad_utf8_after",
    "think": "think",
    "slow-first": "slow_first_ms",
    "slow-headers": "slow_headers_ms",
    "html-status": "html_status",
    "detail-status": "detail_status",
    "text-status": "text_status",
}


def _unknown_fault(name: str) -> _HttpError:
    return _HttpError(400, f"Unknown simulator fault {name!r}. Known faults: {', '.join(FAULT_NAMES)}.")


def _apply_faults(plan: _Plan, spec: str) -> None:
    for name in re.split(r"[+\s]+", spec.strip()):
        if not name:
            continue
        if name in _FAULT_FLAGS:
            setattr(plan, *_FAULT_FLAGS[name])
        elif name == "status-400-context":
            plan.status, plan.context_length = 400, True
        elif match := _FAULT_WITH_NUMBER.fullmatch(name):
            _apply_numbered_fault(plan, name, match)
        else:
            raise _unknown_fault(name)


def _apply_numbered_fault(plan: _Plan, name: str, match: re.Match[str]) -> None:
    kind, number = match.group("kind"), int(match.group("number"))
    if kind.endswith("status") and not 400 <= number <= 599:
        raise _HttpError(400, f"Simulator fault {name!r} needs a status code from 400 to 599.")
    if kind in {"reasoning", "reasoning-field", "think"} and number > MAX_REPLY_TOKENS:
        raise _HttpError(400, f"Simulator fault {name!r} allows at most {MAX_REPLY_TOKENS} tokens.")
    if kind in _NUMBER_FIELDS:
        setattr(plan, _NUMBER_FIELDS[kind], number)
    elif kind == "status":
        plan.status, plan.context_length = number, False
    elif kind in {"reasoning", "reasoning-field"}:
        plan.reasoning = number
        plan.reasoning_key = "reasoning_content" if kind == "reasoning" else "reasoning"
    elif kind == "event-error-after":
        plan.stream_error = (number, "event-error")
    elif kind == "error-field-after":
        plan.stream_error = (number, "error-field")
    elif match.group("shape") is not None:
        shape = match.group("shape")
        if shape not in STREAM_ERROR_SHAPES:
            raise _HttpError(
                400,
                f"Simulator fault {name!r} has an unknown shape {shape!r}; "
                f"one of: {', '.join(STREAM_ERROR_SHAPES)}.",
            )
        plan.stream_error = (number, shape)
    elif match.group("flaky") == "drop":
        plan.flaky_drop = number
    else:
        status = int(match.group("flaky"))
        if status not in FLAKY_STATUSES:
            raise _HttpError(
                400,
                f"Simulator fault {name!r} needs one of the statuses "
                f"{', '.join(map(str, FLAKY_STATUSES))}, or 'drop'.",
            )
        plan.flaky_status = (status, number)


def _as_int(key: str, value: Any) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 0 <= number <= MAX_REPLY_TOKENS:
        raise _HttpError(
            400, f"Simulator option {key!r} must be a whole number from 0 to {MAX_REPLY_TOKENS}."
        )
    return number


def _as_float(key: str, value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise _HttpError(400, f"Simulator option {key!r} must be a number.")
    return number


_HEADER_VALUE = re.compile(r"[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*")


def _as_header_value(key: str, value: Any) -> str:
    """A retry option goes out verbatim (seconds, an HTTP date, even nonsense), but never breaks the head."""
    text = str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    if not _HEADER_VALUE.fullmatch(text):
        raise _HttpError(400, f"Simulator option {key!r} must be printable ASCII text or a number.")
    return text.strip()


def _plan_for(config: SimulatorConfig, model: str, overrides: Any) -> _Plan:
    """Server config, then options after ``?`` in the model name, then the body's ``simulator`` object."""
    options: dict[str, Any] = {}
    _, _, query = model.partition("?")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key:
            options[unquote(key)] = unquote(value)  # not unquote_plus: "+" joins faults
    if overrides is not None:
        if not isinstance(overrides, dict):
            raise _HttpError(400, "The 'simulator' field must be an object.")
        options.update(overrides)
    plan = _Plan(tokens=config.reply_tokens, tps=config.tokens_per_second)
    if "tokens" in options:
        plan.tokens = _as_int("tokens", options["tokens"])
    if "tps" in options:
        plan.tps = _as_float("tps", options["tps"])
    if "retry_after" in options:
        plan.retry_after = _as_header_value("retry_after", options["retry_after"])
    if "retry_after_ms" in options:
        plan.retry_after_ms = _as_header_value("retry_after_ms", options["retry_after_ms"])
    fault = options.get("fault", config.fault)
    if not isinstance(fault, str):
        raise _HttpError(400, "Simulator option 'fault' must be a string.")
    _apply_faults(plan, fault)
    return plan


def _status_error(status: int, model: str) -> _HttpError:
    """What a real provider says for each status, so the app's messages can be tested against it."""
    headers: dict[str, str] = {}
    if status == 401:
        message, type_, code = "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
    elif status == 403:
        message, type_, code = "You are not allowed to use this model.", "invalid_request_error", "forbidden"
    elif status == 404:
        message, type_, code = (
            f"The model `{model}` does not exist.",
            "invalid_request_error",
            "model_not_found",
        )
    elif status == 429:
        message, type_, code = "Rate limit reached.", "requests", "rate_limit_exceeded"
        headers["Retry-After"] = "7"
    elif status >= 500:
        message, type_, code = "The server had an error while processing your request.", "server_error", None
    else:
        message, type_, code = f"{_reason(status)}.", "invalid_request_error", None
    return _HttpError(status, message, error_type=type_, code=code, headers=headers)


def _retry_status_error(status: int, model: str, plan: _Plan) -> _HttpError:
    """``_status_error`` with the plan's ``retry_after`` / ``retry_after_ms`` on a 429 or 503."""
    error = _status_error(status, model)
    if status in {429, 503}:
        if plan.retry_after_ms is not None:
            error.headers.pop("Retry-After", None)
            error.headers["retry-after-ms"] = plan.retry_after_ms
        if plan.retry_after is not None:
            error.headers["Retry-After"] = plan.retry_after
    return error


_CONTEXT_LENGTH_MESSAGE = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens. "
    "Please reduce the length of the messages."
)
_PROXY_TEXT = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
_STREAM_OPTIONS_REJECTED = "Unrecognized request argument supplied: stream_options"


def _answer_error(plan: _Plan, model: str) -> _HttpError | None:
    """The error status a plan answers with instead of a completion, if any; the first that applies wins."""
    if plan.status == 400 and plan.context_length:
        body = _openai_error(
            _CONTEXT_LENGTH_MESSAGE, "invalid_request_error", "messages", "context_length_exceeded"
        )
        return _HttpError(400, _CONTEXT_LENGTH_MESSAGE, body=body)
    if plan.status is not None:
        return _retry_status_error(plan.status, model, plan)
    if plan.html_status is not None:
        code = plan.html_status
        page = _HTML_PAGE.format(code=code, reason=_reason(code))
        return _HttpError(code, page, body=page.encode(), content_type="text/html")
    if plan.detail_status is not None:
        code = plan.detail_status
        detail = "Invalid model parameters." if code < 500 else "Model is loading, please retry."
        return _HttpError(code, detail, body=_json({"detail": detail}))
    if plan.text_status is not None:
        return _HttpError(plan.text_status, _PROXY_TEXT, body=_PROXY_TEXT.encode(), content_type="text/plain")
    return None


# --- Wire helpers ------------------------------------------------------------------------------------


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _json(value: Any) -> bytes:
    # ensure_ascii=False: multi-byte UTF-8 goes on the wire as a real provider sends it.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _error_body(message: str, type_: str, code: str | int | None) -> bytes:
    return _json({"error": {"message": message, "type": type_, "code": code}})


def _openai_error(message: str, type_: str, param: str | None, code: str | None) -> bytes:
    """The full OpenAI error object, ``param`` included, for answers copied from the real API."""
    return _json({"error": {"message": message, "type": type_, "param": param, "code": code}})


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}", "Server: chat-simulator"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_HTML_PAGE = (
    "<html><head><title>{code} {reason}</title></head>"
    "<body><h1>{code} {reason}</h1><script>alert(1)</script></body></html>"
)
_PORTAL_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in to Wi-Fi</title></head>"
    "<body><h1>Welcome to Airport Free Wi-Fi</h1><p>Please accept the terms to continue.</p>"
    '<form method="post"><button>Accept</button></form></body></html>'
)

_TOKEN_CHAR = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(1\.[01])")


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


class _Connection:
    """A client socket with our own read buffer, so a watcher can read mid-stream without losing bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.eof = False

    async def fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = await self.reader.read(_READ_SIZE)
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    async def watch(self) -> None:
        """Return when the client goes away; keep anything it sends (a pipelined request) for later."""
        while len(self.buffer) <= MAX_HEADER_BYTES + MAX_BODY_BYTES and await self.fill():
            pass
        if not self.eof:  # a client flooding us mid-stream: stop reading, wait for the socket to end
            await self.writer.wait_closed()

    async def read_request(self) -> _Request | None:
        """Parse one request; None when the client closed cleanly between requests."""
        while True:
            while self.buffer[:2] == b"\r\n":  # RFC 9112: ignore empty lines before a request
                del self.buffer[:2]
            first_line_end = self.buffer.find(b"\n")
            if first_line_end >= 0:  # answer garbage at once rather than waiting for a blank line
                line = bytes(self.buffer[:first_line_end])
                if not line.endswith(b"\r") or not _REQUEST_LINE.fullmatch(line[:-1]):
                    raise _HttpError(400, "Malformed request line.", close=True)
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise _HttpError(431, "Request headers are too large.", close=True)
            if not await self.fill():
                if not self.buffer:
                    return None
                raise _HttpError(400, "Incomplete request.", close=True)
        if end > MAX_HEADER_BYTES:
            raise _HttpError(431, "Request headers are too large.", close=True)
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        request_line, *header_lines = head.split(b"\r\n")
        match = _REQUEST_LINE.fullmatch(request_line)
        if match is None:
            raise _HttpError(400, "Malformed request line.", close=True)
        headers: dict[str, str] = {}
        for raw in header_lines:
            name, sep, value = raw.partition(b":")
            if not sep or not _TOKEN_CHAR.fullmatch(name):
                raise _HttpError(400, "Malformed header line.", close=True)
            key = name.decode("ascii").lower()
            text = value.strip(b" \t").decode("latin-1")
            if key == "content-length" and key in headers and headers[key] != text:
                raise _HttpError(400, "Conflicting Content-Length headers.", close=True)
            headers[key] = f"{headers[key]}, {text}" if key in headers and key != "content-length" else text
        if "transfer-encoding" in headers:
            raise _HttpError(
                411, "Chunked request bodies are not supported; send Content-Length.", close=True
            )
        raw_length = headers.get("content-length", "0")
        if not raw_length.isdigit() or len(raw_length) > 12:
            raise _HttpError(400, "Invalid Content-Length.", close=True)
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            raise _HttpError(413, "Request body is too large.", close=True)
        while len(self.buffer) < length:
            if not await self.fill():
                raise _HttpError(400, "Incomplete request body.", close=True)
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        method, target, version = (part.decode("latin-1") for part in match.groups())
        return _Request(method, target, version, headers, body)


class _Wire:
    """Writes a response body: chunked framing, optional split-bytes, one drain per write."""

    _PIECES = (1, 2, 3)

    def __init__(self, writer: asyncio.StreamWriter, *, chunked: bool, split: bool) -> None:
        self.writer = writer
        self.chunked = chunked
        self.split = split

    def _frame(self, data: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data

    async def send(self, data: bytes) -> None:
        if not self.split:
            self.writer.write(self._frame(data))
            await self.writer.drain()
            return
        # Each 1-3 byte piece is its own HTTP chunk and its own write, so the client's reads split
        # however TCP coalesces segments. Every multi-byte UTF-8 character is cut after its lead byte
        # and every CR LF between CR and LF, so decoders meet both cases for certain.
        offset = 0
        sizes = itertools.cycle(self._PIECES)
        while offset < len(data):
            end = min(offset + next(sizes), len(data))
            for i in range(offset, end - 1):
                if data[i] >= 0xC0 or (data[i] == 0x0D and data[i + 1] == 0x0A):
                    end = i + 1
                    break
            self.writer.write(self._frame(data[offset:end]))
            offset = end
            await self.writer.drain()
            await asyncio.sleep(0)

    async def end(self) -> None:
        if self.chunked:
            self.writer.write(b"0\r\n\r\n")
            await self.writer.drain()


class _Events:
    """Formats SSE events with the plan's line ends and, for ``comments``, noise a client must ignore."""

    def __init__(self, newline: str, comments: bool) -> None:
        self.newline = newline.encode()
        self.comments = comments
        self.count = 0

    def __call__(self, data: str | bytes, *, name: str | None = None) -> bytes:
        """One event; bytes ``data`` go out as they are, even when they are not UTF-8."""
        payload = data.encode() if isinstance(data, str) else data
        named = [f"event: {name}".encode()] if name else []
        self.count += 1
        if not self.comments:
            return self.newline.join([*named, b"data: " + payload, b"", b""])
        lines = []
        if self.count % 3 == 1:
            lines += [b": keep-alive", b""]  # a comment-only block: dispatches nothing
        if self.count == 1:
            lines.append(b"retry: 3000")
        lines.append(b"id: %d" % self.count)
        if named:
            lines += named
        elif self.count % 2 == 0:
            lines.append(b"event: message")
        lines += [b": the simulator says hello", b"data: " + payload, b"", b""]
        return self.newline.join(lines)

    def bare_line(self, line: str) -> bytes:
        """A line outside the SSE spec (``error: ...``) and the blank line that ends its block."""
        return line.encode() + self.newline * 2


# --- The server --------------------------------------------------------------------------------------


class Simulator:
    """A running simulator; get one from ``start_simulator`` and ``await close()`` it."""

    def __init__(self, host: str, config: SimulatorConfig) -> None:
        self.host = host
        self.port = 0
        self.config = config
        self.stats = SimulatorStats()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._flaky_attempts: dict[str, int] = {}  # model string -> requests seen with a flaky-* fault
        self._closed = False

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def _start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every open connection, stalled streams included."""
        if self._closed or self._server is None:
            return
        self._closed = True
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        self._server.abort_clients()
        await self._server.wait_closed()

    async def __aenter__(self) -> Simulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connection loop --

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.stats.connections += 1
        conn = _Connection(reader, writer)
        try:
            while True:
                try:
                    request = await conn.read_request()
                except _HttpError as error:
                    self.stats.requests += 1
                    await self._send_error(writer, error, keep_alive=False)
                    break
                if request is None:
                    break
                self.stats.requests += 1
                if not await self._respond(conn, request):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:
            logger.exception("Simulator failed while answering a request")
        finally:
            if task is not None:
                self._handlers.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        content_type: str,
        body: bytes,
        *,
        keep_alive: bool,
        **extra: str,
    ) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        headers.update(extra)
        headers["Connection"] = "keep-alive" if keep_alive else "close"
        writer.write(_head(status, headers) + body)
        await writer.drain()

    async def _send_error(self, writer: asyncio.StreamWriter, error: _HttpError, *, keep_alive: bool) -> None:
        body = (
            error.body if error.body is not None else _error_body(error.message, error.error_type, error.code)
        )
        await self._send(
            writer,
            error.status,
            error.content_type,
            body,
            keep_alive=keep_alive and not error.close,
            **error.headers,
        )

    async def _respond(self, conn: _Connection, request: _Request) -> bool:
        """Answer one request; True to keep the connection for another."""
        keep_alive = request.keep_alive
        self.stats.last_headers = dict(request.headers)
        try:
            routes = {"/v1/models": "GET", "/v1/chat/completions": "POST"}
            allowed = routes.get(request.path)
            if allowed is None:
                raise _HttpError(
                    404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url"
                )
            if request.method != allowed:
                # A HEAD client would not read a body, so end the connection after this answer.
                raise _HttpError(
                    405,
                    f"Method {request.method} is not allowed for {request.path}.",
                    close=request.method == "HEAD",
                    headers={"Allow": allowed},
                )
            self._check_auth(request)
            if request.path == "/v1/models":
                if not self.config.list_models:
                    raise _HttpError(404, "Unknown request URL: GET /v1/models.", code="unknown_url")
                data = [
                    {"id": m, "object": "model", "created": _MODEL_CREATED, "owned_by": "simulator"}
                    for m in self.config.models
                ]
                await self._send(
                    conn.writer,
                    200,
                    "application/json",
                    _json({"object": "list", "data": data}),
                    keep_alive=keep_alive,
                )
                return keep_alive
            return await self._chat(conn, request, keep_alive)
        except _HttpError as error:
            await self._send_error(conn.writer, error, keep_alive=keep_alive)
            return keep_alive and not error.close

    def _check_auth(self, request: _Request) -> None:
        if not self.config.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _HttpError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if not hmac.compare_digest(token.strip().encode(), self.config.api_key.encode()):
            raise _HttpError(401, "Incorrect API key provided.", code="invalid_api_key")

    # -- chat completions --

    async def _chat(self, conn: _Connection, request: _Request, keep_alive: bool) -> bool:
        self.stats.chat_requests += 1
        try:
            body = json.loads(request.body)
        except (UnicodeDecodeError, ValueError):
            raise _HttpError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise _HttpError(400, "The request body must be a JSON object.")
        self.stats.last_chat_body = body
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _HttpError(400, "You must provide a model parameter.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise _HttpError(400, "'messages' must be a non-empty array of message objects.")
        plan = _plan_for(self.config, model, body.get("simulator"))
        base_model = model.partition("?")[0]
        # A proxy in front of the model fails first, before the headers' delay and the model's own checks.
        flaky_status: int | None = None
        if plan.flaky_drop is not None or plan.flaky_status is not None:
            attempt = self._flaky_attempts[model] = self._flaky_attempts.get(model, 0) + 1
            if plan.flaky_drop is not None and attempt <= plan.flaky_drop:
                return False  # closed without a byte of answer
            if plan.flaky_status is not None and attempt <= plan.flaky_status[1]:
                flaky_status = plan.flaky_status[0]
        if plan.slow_headers_ms and not await self._hold_headers(conn, plan.slow_headers_ms / 1000):
            return False
        if flaky_status is not None:
            raise _retry_status_error(flaky_status, base_model, plan)
        if plan.reject_stream_options and "stream_options" in body:  # as older servers and proxies do
            self.stats.rejected_stream_options += 1
            error_body = _openai_error(
                _STREAM_OPTIONS_REJECTED, "invalid_request_error", "stream_options", None
            )
            raise _HttpError(400, _STREAM_OPTIONS_REJECTED, body=error_body)
        if error := _answer_error(plan, base_model):
            raise error
        if plan.not_sse:
            await self._send(
                conn.writer, 200, "text/html; charset=utf-8", _PORTAL_PAGE.encode(), keep_alive=keep_alive
            )
            return keep_alive
        tokens = reply_tokens(messages, plan.tokens)
        completion_id = f"chatcmpl-sim-{next(self._ids)}"
        thinking = plan.reasoning + (plan.think or 0)
        usage: dict[str, Any] = {
            "prompt_tokens": _prompt_tokens(messages),
            "completion_tokens": len(tokens) + thinking,
            "total_tokens": _prompt_tokens(messages) + len(tokens) + thinking,
        }
        if thinking:
            usage["completion_tokens_details"] = {"reasoning_tokens": thinking}
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._stream(
                conn, request, keep_alive, plan, model, completion_id, tokens, usage, include_usage
            )
        return await self._complete(conn, keep_alive, plan, model, completion_id, tokens, usage)

    async def _hold_headers(self, conn: _Connection, delay: float) -> bool:
        """Wait before answering at all (``slow-headers``); False when the client left meanwhile."""
        watcher = asyncio.create_task(conn.watch())
        try:
            await asyncio.wait({watcher}, timeout=delay)
            return not watcher.done()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _complete(
        self,
        conn: _Connection,
        keep_alive: bool,
        plan: _Plan,
        model: str,
        completion_id: str,
        tokens: list[str],
        usage: dict[str, Any],
    ) -> bool:
        """A non-streaming answer; stream-shaped faults map to their nearest whole-response equivalent.

        ``not-json``, ``bad-utf8`` and ``usage-null-choices`` have none and change nothing here.
        """
        if plan.slow_first_ms:
            await asyncio.sleep(plan.slow_first_ms / 1000)
        if plan.error_after is not None:
            raise _HttpError(500, "The model crashed.", error_type="server_error", code=500)
        if plan.stream_error is not None:
            message = STREAM_ERROR_MESSAGES[plan.stream_error[1]]
            raise _HttpError(500, message, error_type="server_error", code=500)
        content = "".join(tokens)
        if plan.think is not None:
            content = f"<think>{reasoning_text(plan.think)}</think>\n\n{content}"
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if plan.reasoning:
            message[plan.reasoning_key] = reasoning_text(plan.reasoning)
        completion: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": plan.finish_reason}],
        }
        if not plan.no_usage:
            completion["usage"] = usage
        body = _json(completion)
        if plan.cut_off_after is None and plan.stall_after is None:
            headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
            headers["Connection"] = "keep-alive" if keep_alive else "close"
            wire = _Wire(conn.writer, chunked=False, split=plan.split_bytes)
            conn.writer.write(_head(200, headers))
            await wire.send(body)
            return keep_alive
        # Cut-off and stall: promise the whole body, send half of it.
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
        conn.writer.write(_head(200, headers) + body[: len(body) // 2])
        await conn.writer.drain()
        if plan.stall_after is not None:
            await conn.watch()
        return False

    async def _stream(
        self,
        conn: _Connection,
        request: _Request,
        keep_alive: bool,
        plan: _Plan,
        model: str,
        completion_id: str,
        tokens: list[str],
        usage: dict[str, Any],
        include_usage: bool,
    ) -> bool:
        chunked = request.version == "1.1"  # an HTTP/1.0 client gets the body delimited by the close
        keep_alive = keep_alive and chunked
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        headers["Connection"] = "keep-alive" if keep_alive else "close"
        conn.writer.write(_head(200, headers))
        await conn.writer.drain()
        self.stats.streams_started += 1
        watcher = asyncio.create_task(conn.watch())
        try:
            outcome = await self._stream_body(
                conn, watcher, plan, model, completion_id, tokens, usage, include_usage, chunked
            )
        except ConnectionError:
            outcome = "aborted"
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if outcome == "aborted":
            self.stats.streams_aborted += 1
            return False
        self.stats.streams_completed += 1
        return keep_alive and outcome == "done"

    async def _stream_body(
        self,
        conn: _Connection,
        watcher: asyncio.Task[None],
        plan: _Plan,
        model: str,
        completion_id: str,
        tokens: list[str],
        usage: dict[str, Any],
        include_usage: bool,
        chunked: bool,
    ) -> str:
        """Send the events: "done", "cut-off" (connection closed on purpose) or "aborted" (client left)."""
        wire = _Wire(conn.writer, chunked=chunked, split=plan.split_bytes)
        event = _Events(plan.newline, plan.comments)
        prefix = (
            f'{{"id":"{completion_id}","object":"chat.completion.chunk","created":{int(time.time())},'
            f'"model":{json.dumps(model, ensure_ascii=False)},"choices":'
        ).encode()
        early = plan.early_end()
        # An empty reply still sends one chunk announcing the assistant role.
        content = tokens[: early[0]] if early is not None else tokens or [""]
        loop = asyncio.get_running_loop()
        start = loop.time() + plan.slow_first_ms / 1000

        async def client_still_there(deadline: float) -> bool:
            delay = deadline - loop.time()
            if delay > _WATCHED_SLEEP:
                await asyncio.wait({watcher}, timeout=delay)
            elif delay > 0:
                await asyncio.sleep(delay)
            return not watcher.done() and not conn.writer.is_closing()

        paced = 0
        for data, is_token in _reply_events(plan, prefix, content, event):
            if is_token:
                # Scheduled from one start time, so sleep() overshoot does not accumulate at high rates.
                if not await client_still_there(start + paced / plan.tps if plan.tps > 0 else start):
                    return "aborted"
                if plan.tps <= 0 and paced % 32 == 31:
                    await asyncio.sleep(0)  # as fast as possible, but fair to the other connections
                paced += 1
            await wire.send(data)

        if early is not None and early[1] == "cut-off":
            conn.writer.close()  # abrupt: no finish_reason, no [DONE], no terminating chunk
            return "cut-off"
        if early is not None and early[1] == "stall":
            await watcher  # nothing more until the client leaves (or the server closes)
            return "aborted"
        if early is not None and early[1] == "error":
            error = {"error": {"message": "The model crashed.", "type": "server_error", "code": 500}}
            await wire.send(event(_json(error)))
            await wire.send(event("[DONE]"))
        elif early is not None:
            assert plan.stream_error is not None
            await wire.send(_stream_error_event(plan.stream_error[1], event))
            if not plan.no_done:
                await wire.send(event("[DONE]"))
        else:
            finish = [{"index": 0, "delta": {}, "finish_reason": plan.finish_reason}]
            await wire.send(event(prefix + _json(finish) + b"}"))
            if include_usage and not plan.no_usage:
                choices = b"null" if plan.usage_null_choices else b"[]"
                await wire.send(event(prefix + choices + b',"usage":' + _json(usage) + b"}"))
            if not plan.no_done:
                await wire.send(event("[DONE]"))
        await wire.end()
        return "done"


def _reply_events(
    plan: _Plan, prefix: bytes, content: list[str], event: _Events
) -> Iterator[tuple[bytes, bool]]:
    """The events before the stream's ending, each with whether it is a token (paced) or a fault's extra.

    Reasoning comes first, then the content; the extras of ``not-json`` and ``bad-utf8`` go after
    their n-th content token, or after the last one sent when the reply is shorter.
    """
    role_sent = False

    def chunk(delta: dict[str, Any]) -> bytes:
        nonlocal role_sent
        if not role_sent:  # the first chunk of the stream announces the role, whatever it carries
            delta, role_sent = {"role": "assistant", **delta}, True
        return event(prefix + _json([{"index": 0, "delta": delta, "finish_reason": None}]) + b"}")

    for token in reasoning_tokens(plan.reasoning):
        if plan.reasoning_key == "reasoning_content":  # DeepSeek and vLLM send "content": null beside it
            yield chunk({"content": None, "reasoning_content": token}), True
        else:
            yield chunk({"reasoning": token}), True
    if plan.think is not None:
        for piece in _think_pieces(plan.think):
            yield chunk({"content": piece}), True
    for sent in range(len(content) + 1):
        if plan.not_json_after is not None and min(plan.not_json_after, len(content)) == sent:
            yield event(NOT_JSON_DATA), False
        if plan.bad_utf8_after is not None and min(plan.bad_utf8_after, len(content)) == sent:
            role = b"" if role_sent else b'"role":"assistant",'
            role_sent = True
            delta = (
                b"{" + role + b'"content":"' + BAD_UTF8_BYTES + b'"}'
            )  # raw bytes: _json cannot write them
            yield event(prefix + b'[{"index":0,"delta":' + delta + b',"finish_reason":null}]}'), False
        if sent < len(content):
            yield chunk({"content": content[sent]}), True


def _stream_error_event(shape: str, event: _Events) -> bytes:
    """The in-stream error a ``stream-error-*``, ``event-error`` or ``error-field`` fault ends with."""
    if shape == "error-field":
        return event.bare_line(f"error: {STREAM_ERROR_MESSAGES[shape]}")
    data = json.dumps(STREAM_ERROR_PAYLOADS[shape], ensure_ascii=False)
    return event(data, name="error" if shape == "event-error" else None)


async def start_simulator(
    host: str = "127.0.0.1", port: int = 0, config: SimulatorConfig | None = None
) -> Simulator:
    """Start listening (``port=0`` picks a free port) on the running loop and return the simulator.

    Raises ``ValueError`` for an unknown ``config.fault`` and ``OSError`` when the port is taken.
    """
    config = config or SimulatorConfig()
    try:
        _plan_for(config, "", None)  # a bad server-wide fault fails here, not on every request
    except _HttpError as error:
        raise ValueError(error.message) from None
    simulator = Simulator(host, config)
    await simulator._start(port)
    return simulator


class SimulatorThread:
    """A simulator on its own event loop in a daemon thread, for sync callers (the demo mode, sync tests)."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._simulator: Simulator | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        if self._simulator is None:
            raise RuntimeError("The simulator thread has not been started.")
        return self._simulator.base_url

    @property
    def stats(self) -> SimulatorStats:
        if self._simulator is None:
            raise RuntimeError("The simulator thread has not been started.")
        return self._simulator.stats

    def start(self, timeout: float = 10.0) -> str:
        """Start the thread and return ``base_url`` once the socket is listening."""
        if self._thread is not None:
            return self.base_url
        self._thread = threading.Thread(target=self._run, name="chat-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("The simulator did not start in time.")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        self.port = self._simulator.port if self._simulator else self.port
        return self.base_url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            asyncio.set_event_loop(loop)
            try:
                self._simulator = loop.run_until_complete(start_simulator(self.host, self.port, self.config))
            except BaseException as exc:  # reported to start()'s caller
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the server and its connections, then join the thread."""
        thread, loop, simulator = self._thread, self._loop, self._simulator
        if thread is None or loop is None:
            return
        if simulator is not None and loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(simulator.close(), loop).result(timeout)
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
