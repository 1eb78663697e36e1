"""A chat completion stream as typed events: text, reasoning, finish, usage, done.

Pure functions and one small state machine (``ThinkTags``); no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chat.storable import StorableStream, storable
from chat.upstream.errors import UpstreamError, stream_error_reason

# What the reply's columns hold: a longer finish reason is cut, a larger token count is not one.
FINISH_REASON_LENGTH = 40
MAX_TOKEN_COUNT = 2**31 - 1


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
            events.append(Finish(storable(reason)[:FINISH_REASON_LENGTH]))
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


class StreamTexts:
    """The text and reasoning of one stream as they are shown and stored.

    Each delta is made storable (NUL and lone surrogates become U+FFFD, a surrogate pair cut
    between two chunks is joined), then a leading ``<think>`` block is routed to the reasoning.
    """

    __slots__ = ("_reasoning", "_text", "_think")

    def __init__(self) -> None:
        self._text = StorableStream()
        self._reasoning = StorableStream()
        self._think = ThinkTags()

    def feed(self, event: StreamEvent) -> Iterable[StreamEvent]:
        if isinstance(event, TextDelta):
            text = self._text.feed(event.text)
            if not text:
                return ()
            if self._think.deciding:
                return self._think.feed(text)
            return (event if text is event.text else TextDelta(text),)
        if isinstance(event, ReasoningDelta):
            text = self._reasoning.feed(event.text)
            if not text:
                return ()
            return (event if text is event.text else ReasoningDelta(text),)
        return (event,)

    def end(self) -> list[StreamEvent]:
        """What is still held back when the stream ends."""
        events: list[StreamEvent] = []
        if held := self._reasoning.end():
            events.append(ReasoningDelta(held))
        if held := self._text.end():
            events.extend(self._think.feed(held) if self._think.deciding else [TextDelta(held)])
        events.extend(self._think.end())
        return events


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that is a beginning of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def _int_or_none(value: Any) -> int | None:
    """A token count, or None for anything that is not one a database column can hold."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    return None
