"""A lean streaming client for the simulator: the baseline must not be slowed by the client itself.

httpx costs about a millisecond of CPU per request and tens of microseconds per line; with 100
streams on 2 shared cores that alone inflates the "straight from the simulator" times. This
client keeps one HTTP/1.1 keep-alive connection per concurrent stream, decodes the chunked body
and finds the SSE events with bytes operations, and parses the JSON of each event only after the
clock has been read.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from time import perf_counter
from urllib.parse import urlsplit


@dataclass
class Direct:
    start: float
    first: float | None = None  # first non-empty delta.content
    done: float | None = None  # data: [DONE]
    parts: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def text(self) -> str:
        return "".join(self.parts)


class _Stream(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.result: Direct | None = None
        self.done: asyncio.Future[None] | None = None
        self.state = "idle"  # head | body
        self.events = bytearray()  # dechunked body not yet split into events
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.complete: asyncio.Future[None] | None = None  # the body's last chunk arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._fail(f"connection lost: {exc}")

    def _fail(self, why: str) -> None:
        if self.result is not None and self.done is not None and not self.done.done():
            self.result.error = why
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = perf_counter()
        result = self.result
        if result is None or self.state == "idle":
            return
        buf = self.buf
        buf += data
        if self.state == "head":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if not head.startswith(b"HTTP/1.1 200"):
                self._fail(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            if b"chunked" not in head.lower():
                self._fail("response is not chunked")
                return
            self.state = "body"
        while True:  # de-chunk what is complete
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                break
            size = int(bytes(buf[:line_end]).split(b";", 1)[0], 16)
            if len(buf) < line_end + 2 + size + 2:
                break
            self.events += buf[line_end + 2 : line_end + 2 + size]
            del buf[: line_end + 2 + size + 2]
            if size == 0:
                self.state = "idle"
                if self.complete is not None and not self.complete.done():
                    self.complete.set_result(None)
                break
        events = self.events
        while True:
            end = events.find(b"\n\n")
            if end < 0:
                break
            event = bytes(events[:end])
            del events[: end + 2]
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    result.done = now
                    assert self.done is not None
                    if not self.done.done():
                        self.done.set_result(None)
                    continue
                if result.first is None and b'"content":"' in data and b'"content":""' not in data:
                    result.first = now
                chunk = json.loads(data)
                choices = chunk.get("choices") or [{}]
                content = (choices[0].get("delta") or {}).get("content")
                if content:
                    result.parts.append(content)

    async def request(self, host: str, path: str, body: bytes, within: float) -> Direct:
        loop = asyncio.get_running_loop()
        self.result = result = Direct(start=perf_counter())
        self.done = loop.create_future()
        self.complete = loop.create_future()
        self.state = "head"
        self.buf.clear()
        self.events.clear()
        assert self.transport is not None
        self.transport.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), len(body), body)
        )
        try:
            await asyncio.wait_for(asyncio.shield(self.done), within)
            if not result.error:
                await asyncio.wait_for(asyncio.shield(self.complete), 5)
        except TimeoutError:
            result.error = result.error or f"no end of the body within {within:.0f} s"
        return result


class Client:
    """A pool of keep-alive connections to the simulator, one per concurrent stream."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path.rstrip("/") + "/chat/completions"
        self.idle: list[_Stream] = []

    async def _connection(self) -> _Stream:
        while self.idle:
            conn = self.idle.pop()
            if not conn.lost.done():
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Stream, self.host, self.port)
        return conn

    async def stream(self, model: str, text: str, within: float = 120) -> Direct:
        body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": text}], "stream": True}
        ).encode()
        conn = await self._connection()
        try:
            result = await conn.request(f"{self.host}:{self.port}", self.path, body, within)
        except asyncio.CancelledError:
            if conn.transport is not None:
                conn.transport.close()
            raise
        if result.error or result.done is None:
            if conn.transport is not None:
                conn.transport.close()
        else:
            self.idle.append(conn)
        if not result.error and result.done is None:
            result.error = "no [DONE]"
        return result

    async def warm(self, count: int) -> None:
        """Open ``count`` connections ahead, so no measured request pays for a TCP handshake."""
        conns = [await self._connection() for _ in range(max(0, count - len(self.idle)))]
        self.idle.extend(conns)

    async def aclose(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
