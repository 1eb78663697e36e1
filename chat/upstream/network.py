"""httpx's sockets on plain asyncio: the network backend under the upstream client's connection pool.

httpcore reads a streaming body through its network backend, one ``read`` per chunk. Its default,
anyio's, opens a cancel scope and an exception map around every read and goes through anyio's
stream layers to asyncio's. Streaming replies read hundreds of small chunks a second per worker,
so this backend does the same on an ``asyncio.Protocol`` directly: received bytes wait in a
buffer, and a read returns them at once or waits on one future. Time limits are applied by the
caller (``chat.upstream.client``: one timer per reply), so reads take none; connects, TLS
handshakes and writes keep theirs. Errors are httpcore's own, which httpx maps as usual. A reply
holds its reads through each coalescing window (``ReadHold``): the window's chunks are then read
in one turn of its task instead of one turn each.
"""

# The methods take httpcore's ``timeout`` parameters: that is its interface.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
import typing

import httpcore
from httpcore._backends.base import SOCKET_OPTION, AsyncNetworkBackend, AsyncNetworkStream

# Stop reading from the socket while this much waits in the buffer (a slow consumer).
HIGH_WATER = 256 * 1024


def _may_end(data: bytes) -> bool:
    """Whether received bytes may end the reply: ``[DONE]``, an error, a chunked body's last chunk.

    Such bytes wake a held read at once. An ending these miss (a mark cut in two by the network,
    a body of known length) waits at most the rest of a coalescing window.
    """
    return b"[DONE]" in data or b"error" in data or data.endswith(b"0\r\n\r\n")


class ReadHold:
    """Lets bytes that arrive wait in the buffer, without waking the reading task, while ``held``.

    A reply's text goes out at most once per coalescing window, so text read during the window
    waits anyway. Held, the chunks of a window are read in one turn of the reading task at its
    end (``release``) instead of one turn each, which is most of what a read costs. Only reads
    of the tasks whose context holds it (``hold_reads``) are held, and the ending is not: bytes
    that may end the reply (``_may_end``), and the end of the connection, wake the reader at once.
    A read finds bytes already waiting at once, held or not.
    """

    __slots__ = ("_receiver", "held")

    def __init__(self) -> None:
        self.held = False
        self._receiver: _Receiver | None = None  # the receiver a read waits on, if any

    def release(self) -> None:
        self.held = False
        receiver = self._receiver
        if receiver is not None and receiver.buffer:
            receiver._wake()


_holding: contextvars.ContextVar[ReadHold | None] = contextvars.ContextVar("read_hold", default=None)


def hold_reads(hold: ReadHold | None) -> None:
    """Apply ``hold`` to the upstream reads of the current task, and of the tasks it starts."""
    _holding.set(hold)


class _Receiver(asyncio.Protocol):
    """Bytes from the socket, kept until ``Stream.read`` takes them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.drained: asyncio.Future[None] | None = None
        self.writing_paused = False
        self.hold: ReadHold | None = None  # the hold of the read waiting, if any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        hold = self.hold
        if hold is None or not hold.held or _may_end(data):
            self._wake()
        if len(self.buffer) > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Stream(AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, receiver: _Receiver) -> None:
        self._transport = transport
        self._receiver = receiver

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        receiver = self._receiver
        if not receiver.buffer and not receiver.eof:
            receiver.waiter = asyncio.get_running_loop().create_future()
            hold = receiver.hold = _holding.get()
            if hold is not None:
                hold._receiver = receiver
            try:
                if timeout is None:
                    await receiver.waiter
                else:
                    async with asyncio.timeout(timeout):
                        await receiver.waiter
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading from the server") from None
            finally:
                receiver.waiter = None
                if hold is not None:
                    receiver.hold = hold._receiver = None
        if receiver.buffer:
            if len(receiver.buffer) <= max_bytes:  # the usual case: take all of it
                data = bytes(receiver.buffer)
                receiver.buffer.clear()
            else:
                data = bytes(receiver.buffer[:max_bytes])
                del receiver.buffer[:max_bytes]
            if receiver.paused and len(receiver.buffer) <= HIGH_WATER // 2:
                receiver.paused = False
                self._transport.resume_reading()
            return data
        if receiver.error is not None:
            raise httpcore.ReadError(str(receiver.error) or type(receiver.error).__name__)
        return b""  # the server closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        receiver = self._receiver
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if receiver.writing_paused:
            receiver.drained = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await receiver.drained
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out writing to the server") from None
            finally:
                receiver.drained = None
            if receiver.error is not None or self._transport.is_closing():
                raise httpcore.WriteError("the connection closed while writing")

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._receiver, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._receiver.transport = transport
        return Stream(transport, self._receiver)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # Idle, a connection with something to read was closed (or spoken to) by the server.
            return bool(self._receiver.buffer) or self._receiver.eof or self._transport.is_closing()
        return None


class AsyncioBackend(AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, receiver = await loop.create_connection(_Receiver, host, port, local_addr=local)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _stream(transport, receiver, socket_options)  # asyncio sets TCP_NODELAY itself

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, receiver = await loop.create_unix_connection(_Receiver, path)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {path}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _stream(transport, receiver, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _stream(
    transport: asyncio.BaseTransport,
    receiver: _Receiver,
    socket_options: typing.Iterable[SOCKET_OPTION] | None,
) -> Stream:
    sock = transport.get_extra_info("socket")
    for option in socket_options or ():
        with contextlib.suppress(OSError):
            sock.setsockopt(*option)
    return Stream(typing.cast(asyncio.Transport, transport), receiver)
