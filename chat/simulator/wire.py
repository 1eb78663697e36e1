"""HTTP/1.1 on the simulator's sockets: request parsing, response heads, bodies and chunked framing.

Hand-written rather than borrowed so a fault can control every byte (see the package docstring).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
_READ_SIZE = 65536


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
