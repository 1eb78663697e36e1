"""Daphne's TCP sockets send at once instead of on the reactor's next turn.

Twisted's ``FileDescriptor.write`` only buffers: it registers the socket for writability, and on
its next turn the reactor sends (inside Twisted's logging context) and unregisters the socket.
Under Daphne, which runs Twisted on asyncio's loop, that is two ``epoll_ctl`` calls, a loop turn
and the logging wrappers for every WebSocket frame: more than half of what Daphne spends per
frame (``python -m bench --only frames``). asyncio's own transports try the send at once and
buffer only what the socket did not take; this does the same for Twisted's plain TCP connections.

It applies only while nothing is buffered (so bytes stay in order), the connection is open and
not closing, and no pull producer waits to be asked for more (a streaming producer is paused by
the buffered path if the socket is ever full). TLS inside Twisted and every other case keep
Twisted's path. A failed send is left to that path too: the bytes are buffered, and the reactor's
write meets the error and closes the connection as it always has.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

# What the write below reads of Twisted's TCP connections (all there since Twisted 11).
_ATTRIBUTES = ("TLS", "dataBuffer", "producer", "streamingProducer", "connected", "disconnecting")

_installed = False


def install() -> bool:
    """Make Twisted's TCP connections write through; False if this Twisted lacks what it needs."""
    global _installed
    if _installed:
        return True
    from twisted.internet import tcp
    from twisted.internet.abstract import FileDescriptor

    if not all(hasattr(tcp.Connection, name) for name in _ATTRIBUTES):
        logger.warning("This Twisted's connections differ from what write-through expects; not installed")
        return False
    buffered_write = tcp.Connection.write  # the TLS mixin's: through TLS, or FileDescriptor.write

    def write(self: Any, data: bytes) -> None:
        if (
            self.TLS
            or self.dataBuffer
            or self._tempDataLen
            or (self.producer is not None and not self.streamingProducer)
            or not self.connected
            or self.disconnecting
            or self._writeDisconnected
            or type(data) is not bytes
        ):
            buffered_write(self, data)
            return
        try:
            sent = self.socket.send(data)
        except OSError:
            sent = 0  # full (EAGAIN), or an error the reactor's write will meet and report
        if sent < len(data):
            FileDescriptor.write(self, data[sent:])

    write.__doc__ = "Send now what the socket takes; buffer the rest (``chat.twisted_writes``)."
    tcp.Connection.write = write
    _installed = True
    return True
