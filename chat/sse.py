"""An incremental decoder for ``text/event-stream`` bodies, exact to the WHATWG rules.

Written here rather than taken from a library because the rules that matter
for a chat stream are at the byte level: a CR LF pair or a multi-byte UTF-8
character may be split across two network reads, and one leading BOM must be
dropped (https://html.spec.whatwg.org/multipage/server-sent-events.html).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None
    # Not in the standard: some servers report a failure in an ``error:`` field.
    error: str = ""


class EventStreamDecoder:
    """Feed it bytes as they arrive; it returns the events each read completes."""

    __slots__ = (
        "_data",
        "_error",
        "_event",
        "_last_id",
        "_partial",
        "_retry",
        "_skip_lf",
        "_started",
        "_text",
    )

    def __init__(self) -> None:
        # Invalid bytes become U+FFFD instead of ending the stream.
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""  # an unterminated line carried to the next read
        self._skip_lf = False  # the last read ended in CR: a leading LF belongs to it
        self._started = False
        self._data: list[str] = []
        self._error: list[str] = []
        self._event = ""
        self._last_id = ""
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str:
        return self._last_id

    @property
    def retry(self) -> int | None:
        return self._retry

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return self._feed_text(self._text.decode(chunk))

    def end(self) -> list[ServerSentEvent]:
        """Finish the stream and return what the spec would discard.

        The spec drops an event that is not followed by a blank line. Some
        servers (and Arcee's documented example) end the body right after the
        last ``data:`` line; the caller gets that event here and decides.
        """
        events = self._feed_text(self._text.decode(b"", final=True))
        if self._partial:
            line, self._partial = self._partial, ""
            self._process_line(line)
        if self._data or self._error:
            events.append(self._dispatch())
        return events

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if not self._started:
            if not text:
                return []
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._partial:
            text = self._partial + text
        # Most servers end lines with LF alone: str.split is several times faster than the pattern.
        lines = _LINE_END.split(text) if "\r" in text else text.split("\n")
        self._partial = lines.pop()
        if text.endswith("\r"):
            self._skip_lf = True
        events: list[ServerSentEvent] = []
        for line in lines:
            if line:
                self._process_line(line)
            elif self._data or self._error:
                events.append(self._dispatch())
            else:
                self._event = ""  # a blank line with no data resets the event type
        return events

    def _process_line(self, line: str) -> None:
        if line[0] == ":":
            return  # comment
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        elif field == "error":
            self._error.append(value)
        # Any other field is ignored.

    def _dispatch(self) -> ServerSentEvent:
        event = ServerSentEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._last_id,
            retry=self._retry,
            error="\n".join(self._error),
        )
        self._data = []
        self._error = []
        self._event = ""
        return event
