"""Server-sent events: the formatter, and the events a stream carries before its ending."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from chat.simulator.plan import (
    BAD_UTF8_BYTES,
    NOT_JSON_DATA,
    NUL_TEXT,
    SPLIT_SURROGATE_PIECES,
    STREAM_ERROR_MESSAGES,
    STREAM_ERROR_PAYLOADS,
    SURROGATE_TEXT,
    _Plan,
)
from chat.simulator.replies import _think_pieces, reasoning_tokens
from chat.simulator.wire import _json


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


def _reply_events(
    plan: _Plan, prefix: bytes, content: list[str], event: _Events
) -> Iterator[tuple[bytes, bool]]:
    """The events before the stream's ending, each with whether it is a token (paced) or a fault's extra.

    Reasoning comes first, then the content; the extras of ``not-json`` and ``bad-utf8`` go after
    their n-th content token, or after the last one sent when the reply is shorter.
    """
    role_sent = False

    def chunk(delta: dict[str, Any], *, ascii: bool = False) -> bytes:
        """One content chunk; ``ascii`` writes every non-ASCII character as a JSON escape."""
        nonlocal role_sent
        if not role_sent:  # the first chunk of the stream announces the role, whatever it carries
            delta, role_sent = {"role": "assistant", **delta}, True
        choices = [{"index": 0, "delta": delta, "finish_reason": None}]
        return event(prefix + (_ascii_json(choices) if ascii else _json(choices)) + b"}")

    def escaped(whole: dict[str, Any]) -> bytes:
        return event(_ascii_json(whole))

    for token in reasoning_tokens(plan.reasoning):
        if plan.reasoning_key == "reasoning_content":  # DeepSeek and vLLM send "content": null beside it
            yield chunk({"content": None, "reasoning_content": token}), True
        else:
            yield chunk({"reasoning": token}), True
    if plan.think is not None:
        for piece in _think_pieces(plan.think):
            yield chunk({"content": piece}), True
    if plan.chunks is not None:
        for item in plan.chunks:
            yield (escaped(item) if isinstance(item, dict) else chunk({"content": item}, ascii=True)), True
        return
    escaped_extras = (
        (plan.nul_after, (NUL_TEXT,)),
        (plan.surrogate_after, (SURROGATE_TEXT,)),
        (plan.split_surrogate_after, SPLIT_SURROGATE_PIECES),
    )
    for sent in range(len(content) + 1):
        for after, pieces in escaped_extras:
            if after is not None and min(after, len(content)) == sent:
                for piece in pieces:
                    yield chunk({"content": piece}, ascii=True), False
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


def _ascii_json(value: Any) -> bytes:
    """JSON with every character outside ASCII escaped: how a lone surrogate can go on the wire."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def _stream_error_event(shape: str, event: _Events) -> bytes:
    """The in-stream error a ``stream-error-*``, ``event-error`` or ``error-field`` fault ends with."""
    if shape == "error-field":
        return event.bare_line(f"error: {STREAM_ERROR_MESSAGES[shape]}")
    data = json.dumps(STREAM_ERROR_PAYLOADS[shape], ensure_ascii=False)
    return event(data, name="error" if shape == "event-error" else None)
