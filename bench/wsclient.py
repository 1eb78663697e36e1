"""A minimal WebSocket client for thousands of sockets in one process, cheap per frame.

The bench client shares the machine's cores with the app and the simulator, so every
microsecond it spends per frame is taken from what it measures. This client is an
``asyncio.Protocol`` that parses server frames (never masked) in ``data_received``, stamps them
with one clock read per read, and recognises the app's delta frames with string operations.
It speaks only what the benchmark needs: text frames, ping/pong and close; no extensions.
"""

from __future__ import annotations

import asyncio
import base64
import html
import os
import re
import struct
from bisect import bisect_left
from time import perf_counter

_ENDING = re.compile(r'data-ending="([\w-]+)"')
_ARTICLE = re.compile(r"<article\b[^>]*>")
_USER_ARTICLE = re.compile(r'<article\b[^>]*\bdata-role="user"[^>]*>.*?</article>', re.S)
_ATTR_ID = re.compile(r'\bid="m-(\d+)"')
_ATTR_ROLE = re.compile(r'\bdata-role="(\w+)"')
_ATTR_STATUS = re.compile(r'\bdata-status="([\w-]+)"')
_NOTICE = re.compile(r'id="composer-notice"[^>]*>([^<]*)<')

# A reply's text frames, as ``chat.rendering.update_frames`` writes them: one socket message holds,
# in this order and each optional, finished blocks inserted before the open tail, the tail reset,
# raw text appended to the tail (or to the code of an open fence), and the tail's deletion; rarely
# the whole body instead. Every part opens with ``<div id="m-`` or ``<span id="m-``, and nothing
# inside a part does: model text is escaped, and the sanitizer strips ids from rendered HTML (the
# one id inside a part is the open fence's ``<code id="m-<id>-code">``).
_DIV_PART = "<div id=m-"
_SPAN_PART = "<span id=m-"
_SWAP = " hx-swap-oob="
_ANSWER = frozenset({"body", "tail", "code"})
_REASONING = frozenset({"reasoning", "rtail", "rcode"})
_OPEN_FENCE = '<div class="code-block code-open">'
_CODE_OPEN = "<code id="


class Reply:
    """What one socket saw of one reply, from the moment its message was sent.

    ``position`` is how much of the reply's text the page has received: the length of the
    longest start of ``expected`` that its frames account for (see ``_received``).
    """

    __slots__ = (
        "began",
        "blocks",
        "bytes",
        "delta_bytes",
        "delta_frames",
        "done",
        "echo_bytes",
        "end",
        "ends",
        "expected",
        "first",
        "frames",
        "notice",
        "offsets",
        "position",
        "problems",
        "reply_id",
        "sent",
        "status",
        "tail_deleted",
        "times",
        "wire_bytes",
    )

    def __init__(self, expected: str = "", ends: tuple[int, ...] = (), *, keep_html: bool = False) -> None:
        self.sent = 0.0
        self.first: float | None = None  # arrival of the first frame that added text
        self.end: float | None = None  # arrival of the ending frame
        self.status: str | None = None  # complete | stopped | error | interrupted | refused | closed
        self.expected = expected  # the simulator's reply text, known in advance
        self.ends = ends  # where each of its tokens ends in it
        self.position = 0  # characters of ``expected`` the page has received
        self.times: list[float] = []  # arrival of each frame that added text
        self.offsets: list[int] = []  # ``position`` after each of them
        self.blocks: list[str] | None = [] if keep_html else None  # the finished HTML, in order
        self.tail_deleted = False  # the frame saying the text is complete came
        self.frames = 0
        self.delta_frames = 0  # socket messages that changed the reply's text (answer or reasoning)
        self.delta_bytes = 0  # their payloads
        self.bytes = 0  # frame payloads
        self.echo_bytes = 0  # of which the sent message shown back (its <article>), not the reply
        self.wire_bytes = 0  # payloads and frame headers
        self.reply_id: str | None = None
        self.notice = ""
        self.problems: list[str] = []
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = loop.create_future()
        self.began: asyncio.Future[None] = loop.create_future()  # first text, or the end

    @property
    def html(self) -> str:
        """The reply's body as the page shows it once its tail is deleted (with ``keep_html``)."""
        return "".join(self.blocks or ())

    def finish(self, status: str, at: float) -> None:
        if self.status is None:
            self.status = status
            self.end = at
        if not self.done.done():
            self.done.set_result(None)
        if not self.began.done():
            self.began.set_result(None)

    def delta(self, text: str, now: float) -> bool:
        """Take a frame that may change the reply's text; False if it is something else."""
        pos, size = 0, len(text)
        before = self.position
        while pos < size:
            span = text.startswith(_SPAN_PART, pos)
            if span:
                id_start = pos + len(_SPAN_PART) - 2  # at "m-"
            elif text.startswith(_DIV_PART, pos):
                id_start = pos + len(_DIV_PART) - 2
            else:
                if pos == 0:
                    return False
                self.problems.append(f"unexpected markup in a text frame: {text[pos : pos + 60]!r}")
                break
            id_end = text.find(" ", id_start)
            owner, _, element = text[id_start:id_end].rpartition("-")
            if pos == 0:
                if element not in _ANSWER and element not in _REASONING:
                    return False  # the footer, a note: the same prefix, another kind of frame
                if self.reply_id is None:
                    self.reply_id = owner[2:]
            if not text.startswith(_SWAP, id_end) or owner[2:] != self.reply_id:
                self.problems.append(f"text frame for another element: {text[pos:id_end]!r}")
                break
            swap_start = id_end + len(_SWAP)
            swap_end = text.find(">", swap_start)
            swap = text[swap_start:swap_end]
            inner = swap_end + 1
            if span:  # a <span>: appended raw text, escaped, so no "<" inside
                close = text.find("</span>", inner)
                pos = close + 7
            elif swap == "delete":
                close = inner
                pos = close + 6
            else:  # a <div>: it ends where the next part starts, or with the frame
                div_at, span_at = text.find(_DIV_PART, inner), text.find(_SPAN_PART, inner)
                pos = min(at for at in (div_at, span_at, size) if at >= 0)
                close = pos - 6
            if element in _ANSWER:
                self._answer(element, swap, text[inner:close])
        self.delta_frames += 1
        if self.position > before:
            self.times.append(now)
            self.offsets.append(self.position)
            if self.first is None:
                self.first = now
                if not self.began.done():
                    self.began.set_result(None)
        return True

    def _answer(self, element: str, swap: str, inner: str) -> None:
        if element == "body":  # the whole body again, at the end (a link reference came late)
            if swap == "innerHTML":
                self.tail_deleted = True  # the tail went with the rest
            if self.blocks is not None:  # (``beforeend``: the rest of a body too large for one frame)
                self.blocks[:] = [*self.blocks, inner] if swap == "beforeend" else [inner]
        elif swap == "beforeend":  # raw text appended to the tail or to the open fence's code
            if "&" in inner:
                inner = html.unescape(inner)
            if not self.expected.startswith(inner, self.position):
                self.problems.append(f"text differs at char {self.position}")
            self.position += len(inner)
        elif swap == "innerHTML":  # the tail reset
            if inner.startswith(_OPEN_FENCE):
                code = inner.find(">", inner.find(_CODE_OPEN)) + 1
                inner = inner[code : inner.rfind("</code>")]
            if "&" in inner:
                inner = html.unescape(inner)
            self._received(inner)
        elif swap == "beforebegin":  # finished blocks
            if self.blocks is not None:
                self.blocks.append(inner)
        elif swap == "delete":
            self.tail_deleted = True
        else:
            self.problems.append(f"unknown swap {swap!r} on {element}")

    def _received(self, tail: str) -> None:
        """The tail now shows ``tail``: the page has received the text up to where ``tail`` ends.

        The tail is the rest of the text the app has been given after its finished blocks (leading
        blank lines left out; an open fence's code without its opening line), so it always ends
        where that text ends, and that is at a token boundary, at or after the previous position:
        the app is fed whole tokens. The new position is therefore the first token end at or after
        the old one where ``expected`` ends with ``tail``. An empty tail means the text ends with a
        line break (everything before is finished blocks or blank lines), so "\n" is looked for
        instead. Matching the first such end could only go wrong if the tail also ended at an
        earlier token end inside the same frame's new text, which needs a tail repeating itself
        within a few tokens; the simulator's texts have none, and a wrong guess would show up as
        the next appended text differing from ``expected`` there.
        """
        want, ends = self.expected, self.ends
        needle = tail or "\n"
        at = want.find(needle, max(self.position - len(needle), 0))
        while at >= 0:
            end = at + len(needle)
            i = bisect_left(ends, end)
            if i < len(ends) and ends[i] == end:
                self.position = end
                return
            at = want.find(needle, at + 1)
        self.problems.append(f"tail not in the reply after char {self.position}: {tail[:40]!r}")


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    keystream = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ keystream).to_bytes(n, "big")


def _client_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class Socket(asyncio.Protocol):
    """One WebSocket; ``reply`` collects what arrives for the message last sent on it."""

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._request = request
        self._buf = bytearray()
        self._handshaken = False
        self._fragments: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self.frames = 0  # text frames since the socket opened
        self.last_frame_at = 0.0
        self.opened_at = 0.0
        self.reply: Reply | None = None
        self._want: tuple[int, asyncio.Future[None]] | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        now = perf_counter()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        if self.reply is not None and self.reply.status is None:
            self.reply.problems.append(f"socket closed (code {self.close_code})")
            self.reply.finish("closed", now)
        if self._want is not None and not self._want[1].done():
            self._want[1].set_exception(ConnectionError("socket closed"))

    def data_received(self, data: bytes) -> None:
        now = perf_counter()
        buf = self._buf
        buf += data
        if not self._handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status_line + b" ":
                self.opened.set_exception(ConnectionError(f"handshake refused: {status_line.decode()!r}"))
                assert self.transport is not None
                self.transport.close()
                return
            self._handshaken = True
            self.opened.set_result(None)
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            length = buf[pos + 1] & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
            end = pos + header + length
            if end > size:
                break
            payload = bytes(buf[pos + header : end])
            pos = end
            opcode = b0 & 0x0F
            if opcode in (0x1, 0x0):
                if not b0 & 0x80:
                    self._fragments.append(payload)
                    continue
                if self._fragments:
                    payload = b"".join([*self._fragments, payload])
                    self._fragments.clear()
                self._text(payload, header + length, now)
            elif opcode == 0x9:
                self._write(0xA, payload)
            elif opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._write(0x8, payload[:2])
                assert self.transport is not None
                self.transport.close()
        if pos:
            del buf[:pos]

    # --- frames ---

    def _text(self, payload: bytes, wire: int, now: float) -> None:
        self.frames += 1
        self.last_frame_at = now
        want = self._want
        if want is not None and self.frames >= want[0] and not want[1].done():
            want[1].set_result(None)
        reply = self.reply
        if reply is None:
            return
        reply.frames += 1
        reply.bytes += len(payload)
        reply.wire_bytes += wire
        text = payload.decode()
        if text[:1].isspace():
            text = text.lstrip()
        if reply.delta(text, now):
            reply.delta_bytes += len(payload)
        else:
            reply.echo_bytes += sum(len(m.group(0).encode()) for m in _USER_ARTICLE.finditer(text))
            self._other(reply, text, now)

    def _other(self, reply: Reply, text: str, now: float) -> None:
        if reply.status is not None:
            return
        if match := _NOTICE.search(text):
            notice = html.unescape(match.group(1)).strip()
            if notice:
                reply.notice = notice
                reply.finish("refused", now)
                return
        for tag in _ARTICLE.findall(text):
            role = _ATTR_ROLE.search(tag)
            ident = _ATTR_ID.search(tag)
            status = _ATTR_STATUS.search(tag)
            if role is not None and role.group(1) == "assistant" and ident is not None:
                if reply.reply_id is None:
                    reply.reply_id = ident.group(1)
                if ident.group(1) == reply.reply_id and status is not None and status.group(1) != "streaming":
                    reply.finish(status.group(1), now)
                    return
        if match := _ENDING.search(text):
            reply.finish(match.group(1), now)

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_client_frame(opcode, payload))

    # --- API ---

    def start(
        self, message: str, expected: tuple[str, tuple[int, ...]] = ("", ()), *, keep_html: bool = False
    ) -> Reply:
        """Send ``message`` (JSON text) and collect what follows into a fresh ``Reply``.

        ``expected`` is the reply's text and where each of its tokens ends (``bench.app.expected``):
        what the frames are matched against to know how much of it the page has.
        """
        reply = Reply(*expected, keep_html=keep_html)
        self.reply = reply
        reply.sent = perf_counter()
        self._write(0x1, message.encode())
        return reply

    def send_text(self, text: str) -> None:
        """Send a text frame without starting a new ``Reply`` (a stop request, say)."""
        self._write(0x1, text.encode())

    async def wait_frames(self, count: int, within: float) -> bool:
        """Wait until ``count`` text frames have arrived since the socket opened; False on timeout."""
        if self.frames >= count:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._want = (count, future)
        try:
            await asyncio.wait_for(future, within)
            return True
        except TimeoutError:
            return False
        finally:
            self._want = None

    async def wait_quiet(self, quiet: float, within: float) -> int:
        """Wait until no frame arrived for ``quiet`` seconds; the number of frames so far."""
        deadline = perf_counter() + within
        while perf_counter() < deadline:
            idle = perf_counter() - max(self.last_frame_at, self.opened_at)
            if idle >= quiet:
                break
            await asyncio.sleep(quiet - idle + 0.001)
        return self.frames

    def close(self) -> None:
        """Say goodbye (code 1000) and drop the connection without waiting for the answer."""
        if self.transport is not None and not self.transport.is_closing():
            self._write(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


async def connect(host: str, port: int, path: str, headers: dict[str, str], within: float = 30) -> Socket:
    """Open a WebSocket to ``ws://host:port/path``; raise on a refused handshake."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    sock = Socket(request)
    await asyncio.wait_for(loop.create_connection(lambda: sock, host, port), within)
    try:
        await asyncio.wait_for(asyncio.shield(sock.opened), within)
    except BaseException:
        if sock.transport is not None:
            sock.transport.close()
        raise
    sock.opened_at = perf_counter()
    return sock
