"""Twisted's TCP writes on asyncio's loop, as Daphne runs them: run by tests/test_twisted_writes.py.

A child process, because a Twisted reactor is installed once per process and cannot be restarted.
Prints one JSON object: what each check saw. ``--without`` leaves Twisted's own write in place;
``--uvloop`` runs the reactor on uvloop's loop, as a worker started by ``chatsite.serve`` does.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading

import uvloop
from twisted.internet import asyncioreactor

LOOP = uvloop.new_event_loop() if "--uvloop" in sys.argv else asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
asyncioreactor.install(LOOP)

from twisted.internet import protocol, reactor  # noqa: E402

from chat import twisted_writes  # noqa: E402

CHUNK = 256 * 1024
CHUNKS = 40  # 10 MB: more than the socket buffers hold, so most of it waits in Twisted's buffer


class Server(protocol.Protocol):
    def connectionMade(self) -> None:
        self.lost = None
        self.factory.arrived.put_nowait(self)

    def connectionLost(self, reason: object) -> None:
        self.lost = type(getattr(reason, "value", reason)).__name__


class Factory(protocol.ServerFactory):
    protocol = Server

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[Server] = asyncio.Queue()


class Pull:
    """A pull producer: it writes one chunk each time the transport asks for more."""

    def __init__(self, transport: object, count: int) -> None:
        self.transport, self.left = transport, count

    def resumeProducing(self) -> None:
        if self.left:
            self.left -= 1
            self.transport.write(b"p" * 1000)
        else:
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        self.left = 0


def read_all(sock: socket.socket, size: int) -> bytes:
    """Up to ``size`` bytes, or what came before the peer went quiet for 5 s."""
    data = bytearray()
    sock.settimeout(5)
    try:
        while len(data) < size and (part := sock.recv(1 << 20)):
            data += part
    except TimeoutError:
        pass
    return bytes(data)


def pattern() -> list[bytes]:
    return [bytes([65 + i % 26]) * CHUNK for i in range(CHUNKS)]


async def checks(port: int, factory: Factory) -> dict[str, object]:
    results: dict[str, object] = {}
    loop = asyncio.get_running_loop()

    async def connect() -> tuple[socket.socket, Server]:
        client = socket.create_connection(("127.0.0.1", port))
        return client, await factory.arrived.get()

    # 1. A write reaches the peer before the reactor turns.
    client, server = await connect()
    server.transport.write(b"hello")
    client.setblocking(False)
    try:
        results["at_once"] = client.recv(100).decode()
    except BlockingIOError:
        results["at_once"] = ""
    client.setblocking(True)

    # 2. More than the socket takes: every byte arrives, in order.
    other, server = await connect()
    reader = loop.run_in_executor(None, read_all, other, CHUNK * CHUNKS)
    for chunk in pattern():
        server.transport.write(chunk)
    results["in_order"] = await reader == b"".join(pattern())

    # 3. A pull producer is still asked for more each time the buffer empties.
    third, server = await connect()
    server.transport.registerProducer(Pull(server.transport, 20), False)
    results["pulled"] = len(await loop.run_in_executor(None, read_all, third, 20_000))

    # 4. A peer that reset the connection: the write is refused and the connection is closed.
    fourth, server = await connect()
    fourth.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    fourth.close()
    await asyncio.sleep(0.1)
    for _ in range(3):
        server.transport.write(b"x" * 1000)
        await asyncio.sleep(0.05)
    for _ in range(100):
        if server.lost:
            break
        await asyncio.sleep(0.02)
    results["lost"] = server.lost
    for sock in (client, other, third):
        sock.close()
    return results


def main() -> None:
    installed = twisted_writes.install() if "--without" not in sys.argv else False
    factory = Factory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    loop = "uvloop" if type(LOOP).__module__.startswith("uvloop") else "asyncio"
    outcome: dict[str, object] = {"installed": installed, "loop": loop}

    def run() -> None:
        task = LOOP.create_task(checks(port, factory))

        def done(task: asyncio.Task[dict[str, object]]) -> None:
            outcome.update(task.result())
            reactor.stop()

        task.add_done_callback(done)

    reactor.callWhenRunning(run)
    timer = threading.Timer(30, lambda: reactor.callFromThread(reactor.stop))
    timer.start()
    reactor.run()
    timer.cancel()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
