"""The upstream client's network backend on plain asyncio (``chat.upstream.network``), on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import sys

import httpx
import pytest

from chat.upstream import network
from chat.upstream.client import _transport
from chatsite.serve import loop_name
from tests.processes import self_signed_certificate

LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=30)


async def serve(handler, *, ssl_context: ssl.SSLContext | None = None):
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def client(**kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=_transport(LIMITS, **kwargs), timeout=5)


async def test_these_tests_run_on_each_loop_a_worker_may_run_on(request):
    assert loop_name(asyncio.get_running_loop()) == request.node.callspec.id


async def test_a_streamed_body_arrives_whole_in_its_chunks():
    body = b"".join(b'data: {"n": %d}\n\n' % n for n in range(500)) + b"x" * 1_000_000

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for start in range(0, len(body), 7_000):
            part = body[start : start + 7_000]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, port = await serve(handler)
    async with server, client() as http, http.stream("GET", f"http://127.0.0.1:{port}/") as response:
        received = b"".join([chunk async for chunk in response.aiter_raw()])
    assert received == body


async def test_a_connection_the_server_closed_while_idle_is_not_reused():
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive promised, then closed

    server, port = await serve(handler)
    async with server, client() as http:
        first = await http.get(f"http://127.0.0.1:{port}/")
        await asyncio.sleep(0.05)
        second = await http.get(f"http://127.0.0.1:{port}/")
    assert first.text == second.text == "ok"
    assert connections == 2


async def test_a_body_cut_short_is_a_read_error():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    server, port = await serve(handler)
    async with server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_nothing_listening_is_a_connect_error():
    server, port = await serve(lambda reader, writer: None)
    server.close()
    await server.wait_closed()
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


@pytest.fixture
def certificate(tmp_path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the test's certificate)")
    cert, key = self_signed_certificate(tmp_path)
    return str(cert), str(key)


async def test_tls_is_verified_and_streams(certificate):
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 10\r\n\r\n")
        writer.write(b"data: hi\n\n")
        await writer.drain()
        writer.close()

    server, port = await serve(handler, ssl_context=server_side)
    async with server:
        async with client(ssl_context=ssl.create_default_context(cafile=cert)) as trusted:
            response = await trusted.get(f"https://127.0.0.1:{port}/")
            assert response.text == "data: hi\n\n"
        async with client() as untrusting:  # the system's roots do not include the test's certificate
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(f"https://127.0.0.1:{port}/")


async def test_an_upstream_request_searches_for_no_module(simulator):
    """httpcore asks sniffio which async library runs, several times a request: it must be importable.

    A missing module is never cached, so each ask would search ``sys.path`` again (about 1 ms).
    """
    from chat.upstream import ChatRequest, Endpoint, TextDelta, close_clients, stream_chat

    class Searches:
        def __init__(self) -> None:
            self.names: list[str] = []

        def find_spec(self, name, path=None, target=None):
            self.names.append(name)
            return None

    endpoint = Endpoint(base_url=simulator.base_url)
    request = ChatRequest(model="demo?tokens=3&tps=1000", messages=[{"role": "user", "content": "hi"}])

    async def reply() -> str:
        return "".join([e.text async for e in stream_chat(endpoint, request) if isinstance(e, TextDelta)])

    assert await reply()  # the first request may import what the client uses
    finder = Searches()
    sys.meta_path.insert(0, finder)
    try:
        assert await reply()
    finally:
        sys.meta_path.remove(finder)
        await close_clients()
    assert finder.names == []


class Body:
    """A streamed response whose chunks the test sends (``send``; None: the last chunk)."""

    def __init__(self) -> None:
        self.parts: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.chunks = None

    def send(self, part: bytes | None) -> None:
        self.parts.put_nowait(part)

    async def next_while_held(self, hold: network.ReadHold, part: bytes | None) -> asyncio.Future:
        """Hold, start reading the next chunk, then send ``part``: the read under way."""
        hold.held = True
        reading = asyncio.ensure_future(anext(self.chunks, None))  # a task: it inherits the hold
        await asyncio.sleep(0.05)
        self.send(part)
        return reading


@contextlib.asynccontextmanager
async def streamed_body(*, hold: network.ReadHold | None, close: bool = False):
    """A chunked response read on the network backend, with this task's reads under ``hold``.

    The server ends the body when sent None, then waits for the client to close (``close``:
    it closes the connection instead, without the last chunk).
    """
    body = Body()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        while (part := await body.parts.get()) is not None:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        if close:
            writer.close()
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    network.hold_reads(hold)
    server, port = await serve(handler)
    async with server, client() as http:
        response = await http.send(http.build_request("GET", f"http://127.0.0.1:{port}/"), stream=True)
        body.chunks = response.aiter_raw()
        try:
            yield body
        finally:
            body.send(None)  # the server's handler ends (the server waits for it)
            await response.aclose()


async def test_a_held_read_waits_for_its_release_and_reads_what_came_meanwhile_at_once():
    hold = network.ReadHold()
    async with streamed_body(hold=hold) as body:
        body.send(b"data: one\n\n")
        assert await anext(body.chunks) == b"data: one\n\n"  # not held: read as it comes
        reading = await body.next_while_held(hold, b"data: two\n\n")
        body.send(b"data: three\n\n")
        await asyncio.sleep(0.2)
        assert not reading.done()  # both arrived; neither woke the read
        hold.release()
        assert await asyncio.wait_for(reading, 1) == b"data: two\n\n"
        # The rest waited in the buffer: read at once, though held again.
        hold.held = True
        assert await asyncio.wait_for(anext(body.chunks), 1) == b"data: three\n\n"


@pytest.mark.parametrize(
    "part",
    [b"data: [DONE]\n\n", b'data: {"error": {"message": "overloaded"}}\n\n', None],
    ids=["done", "error", "last-chunk"],
)
async def test_what_may_end_the_reply_wakes_a_held_read_at_once(part):
    hold = network.ReadHold()
    async with streamed_body(hold=hold) as body:
        reading = await body.next_while_held(hold, part)
        assert await asyncio.wait_for(reading, 1) == part  # None: the body ended
        assert hold.held


async def test_a_closed_connection_wakes_a_held_read_at_once():
    hold = network.ReadHold()
    async with streamed_body(hold=hold, close=True) as body:
        reading = await body.next_while_held(hold, None)
        with pytest.raises(httpx.RemoteProtocolError):
            await asyncio.wait_for(reading, 1)


async def test_only_the_reads_of_the_holding_task_are_held():
    hold = network.ReadHold()
    async with streamed_body(hold=None) as body:  # this task's reads are under no hold
        reading = await body.next_while_held(hold, b"data: one\n\n")
        assert await asyncio.wait_for(reading, 1) == b"data: one\n\n"
