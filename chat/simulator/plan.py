"""What one request asks of the simulator: the server's defaults, then its options and faults.

The fault constants live here too, so tests can compare what a client reports with what was sent.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from chat.simulator.wire import _HttpError

MAX_REPLY_TOKENS = 1_000_000

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
    "nul-<n>",
    "surrogate-<n>",
    "split-surrogate-<n>",
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

# ``nul-<n>``, ``surrogate-<n>`` and ``split-surrogate-<n>``: extra content written with JSON escapes,
# as servers send them: a NUL, a high surrogate whose other half never comes (a character cut in
# two), and an emoji whose two surrogate halves arrive in separate chunks.
NUL_TEXT = "NUL:\x00."
SURROGATE_TEXT = "cut:\ud83d."
SPLIT_SURROGATE_PIECES = ("emoji:\ud83d", "\ude00.")


@dataclass(frozen=True)
class SimulatorConfig:
    """Server-wide defaults; requests may override the pace, the length and the fault."""

    tokens_per_second: float = 50.0  # 0 or less: as fast as possible, no sleeping
    reply_tokens: int = 40
    fault: str = ""
    api_key: str = ""  # when set, requests need ``Authorization: Bearer <api_key>``
    list_models: bool = True  # False: ``GET /v1/models`` answers 404, to exercise fallbacks
    models: tuple[str, ...] = ("demo",)
    # Reported on ``GET /v1/models`` as OpenRouter's ``context_length`` and vLLM's ``max_model_len``.
    context_length: int | None = None


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
    nul_after: int | None = None
    surrogate_after: int | None = None
    split_surrogate_after: int | None = None
    chunks: list[Any] | None = None  # the ``chunks`` option: sent instead of the reply's tokens
    style: str = "prose"  # or "markdown" (a Markdown passage) or "hostile" (markup that attacks the page)
    finish_reason: str = "stop"
    no_usage: bool = False
    usage_null_choices: bool = False
    no_done: bool = False
    split_bytes: bool = False
    newline: str = "\n"
    comments: bool = False
    slow_first_ms: int = 0
    slow_headers_ms: int = 0
    answer: str | None = None  # the ``answer`` option: the text of a whole (non-streaming) answer

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
    r"|think|not-json|bad-utf8|nul|surrogate|split-surrogate|flaky-(?P<flaky>drop|\d{1,3})|slow-first|slow-headers)-(?P<number>\d{1,9})"
)
# Faults whose number is simply stored on the plan.
_NUMBER_FIELDS = {
    "cut-off-after": "cut_off_after",
    "stall-after": "stall_after",
    "error-event-after": "error_after",
    "not-json": "not_json_after",
    "bad-utf8": "bad_utf8_after",
    "nul": "nul_after",
    "surrogate": "surrogate_after",
    "split-surrogate": "split_surrogate_after",
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


def _as_chunks(value: Any) -> list[Any]:
    """The ``chunks`` option: a JSON array, or its text (in which escapes such as ``\\udead`` survive).

    A string item is one content delta; an object is a whole chunk, sent as it is.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, list) or not all(isinstance(item, str | dict) for item in value):
        raise _HttpError(400, "Simulator option 'chunks' must be a JSON array of strings and objects.")
    return value


_HEADER_VALUE = re.compile(r"[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*")


def _as_header_value(key: str, value: Any) -> str:
    """A retry option goes out verbatim (seconds, an HTTP date, even nonsense), but never breaks the head."""
    text = str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    if not _HEADER_VALUE.fullmatch(text):
        raise _HttpError(400, f"Simulator option {key!r} must be printable ASCII text or a number.")
    return text.strip()


def _plan_for(config: SimulatorConfig, model: str, overrides: Any, *, streaming: bool = True) -> _Plan:
    """Server config, then options after ``?`` in the model name, then the body's ``simulator`` object.

    A whole (non-streaming) answer also takes ``answer`` and ``answer_fault``, so that one model
    name can give a side request (a title) its own text and faults, apart from the replies.
    """
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
    if "chunks" in options:
        plan.chunks = _as_chunks(options["chunks"])
    if "style" in options:
        if options["style"] not in ("prose", "markdown", "hostile"):
            raise _HttpError(400, "Simulator option 'style' must be 'prose', 'markdown' or 'hostile'.")
        plan.style = options["style"]
    fault = options.get("fault", config.fault)
    if not streaming and "answer_fault" in options:
        fault = options["answer_fault"]
    if not isinstance(fault, str):
        raise _HttpError(400, "Simulator option 'fault' must be a string.")
    _apply_faults(plan, fault)
    if not streaming and "answer" in options:
        if not isinstance(options["answer"], str):
            raise _HttpError(400, "Simulator option 'answer' must be a string.")
        plan.answer = options["answer"]
    return plan
