"""``--only read``: what reading the upstream costs per chunk, through the app's own reader.

In a child process, ``chat.upstream.stream_chat`` reads replies of ``TOKENS`` tokens from the
simulator (``TPS`` tokens a second, so each token is its own write and, mostly, its own read, as
live streams are read) over loopback, ``ROUNDS`` times
for each network backend under httpx: anyio's (httpx's default) and the plain-asyncio one the app
uses (``chat.upstream.network``). The figure is the child's CPU time per token, the reading and
decoding included, the median of the rounds; the simulator's CPU is its own.

For scale, a third reader gives the same chunks to the app's decoder (``_read_events``) through a
minimal HTTP/1.1 client written here on the app's network backend, with no HTTP library: what the
read would cost if the app framed the body itself instead of going through httpx, httpcore and h11.
It is not the app's reader (no pool, no proxy, no TLS, no error mapping) and only measures that
floor.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from httpcore import AsyncNetworkStream

from bench import procs
from bench.report import Report, log

TOKENS = 4_000
TPS = 2_000
ROUNDS = 3


def figures(*, api_base: str, report: Report) -> None:
    log(f"upstream read: {ROUNDS * 2} rounds of {TOKENS:,} tokens at {TPS:,}/s per backend")
    done = subprocess.run(
        [procs.PYTHON, "-c", "from bench.upstream_read import worker; worker()"],
        cwd=procs.ROOT,
        env=dict(procs.base_env(CHAT_API_BASE=api_base), BENCH_API_BASE=api_base),
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    anyio_us = statistics.median(result["anyio"]) * 1e6
    asyncio_us = statistics.median(result["asyncio"]) * 1e6
    lean_us = statistics.median(result["lean"]) * 1e6
    report.row(
        f"Upstream read CPU per chunk ({TPS:,} tokens/s), httpx on anyio (httpx's default)",
        f"{anyio_us:.1f} us",
    )
    report.row(
        f"Upstream read CPU per chunk ({TPS:,} tokens/s), httpx on plain asyncio (the app's)",
        f"{asyncio_us:.1f} us ({(1 - asyncio_us / anyio_us) * 100:.0f}% less)",
    )
    report.row(
        f"Upstream read CPU per chunk ({TPS:,} tokens/s), no HTTP library (for scale, not the app's)",
        f"{lean_us:.1f} us (httpx's layers: {asyncio_us - lean_us:.1f} us of the app's)",
    )


def worker() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    django.setup()
    import httpx

    from chat.upstream import client as upstream
    from chat.upstream import network
    from chat.upstream.client import ChatRequest, Endpoint, stream_chat
    from chat.upstream.events import TextDelta

    endpoint = Endpoint(base_url=os.environ["BENCH_API_BASE"])
    model = f"demo?tokens={TOKENS}&tps={TPS}"
    request = ChatRequest(model=model, messages=[{"role": "user", "content": "go"}])

    async def one_round(lean: _LeanConnection | None = None) -> float:
        tokens = 0
        started = time.process_time()
        if lean is None:
            events = stream_chat(endpoint, request)
        else:
            body = json.dumps({"model": model, "messages": request.messages, "stream": True}).encode()
            watchdog = upstream._Watchdog(upstream._Limits.starting_now())
            chunks = lean.chunks(body)
            events = upstream._read_events(chunks, upstream.StreamTexts(), watchdog)
        async for event in events:
            tokens += isinstance(event, TextDelta)
        if lean is not None:
            watchdog.close()
            async for _ in chunks:  # the body's last chunk, after [DONE]: the connection is reused
                pass
        assert tokens >= TOKENS * 0.9, tokens
        return (time.process_time() - started) / tokens

    async def lean_rounds() -> list[float]:
        parts = urlsplit(endpoint.base_url)
        stream = await network.AsyncioBackend().connect_tcp(parts.hostname, parts.port)
        lean = _LeanConnection(stream, parts.netloc, parts.path.rstrip("/") + "/chat/completions")
        try:
            await one_round(lean)
            return [await one_round(lean) for _ in range(ROUNDS)]
        finally:
            await lean.aclose()

    async def rounds(lean: bool) -> list[float]:
        original = upstream._transport
        if not lean:
            upstream._transport = lambda limits, **kwargs: None  # httpx's own transport (anyio)
        try:
            await upstream.close_clients()
            await one_round()  # warm: the connection, the caches
            return [await one_round() for _ in range(ROUNDS)]
        finally:
            upstream._transport = original
            await upstream.close_clients()

    async def main() -> dict[str, list[float]]:
        result = {}
        for _ in range(2):  # alternate, so drift on a shared machine touches both
            for name, lean in (("anyio", False), ("asyncio", True)):
                result.setdefault(name, []).extend(await rounds(lean))
            result.setdefault("lean", []).extend(await lean_rounds())
        assert isinstance(upstream.get_client()._transport, httpx.AsyncHTTPTransport)
        await upstream.close_clients()
        return result

    print(json.dumps(asyncio.run(main())))


class _LeanConnection:
    """One keep-alive HTTP/1.1 connection on the app's network backend, framed with bytes operations.

    Chunked responses only. The socket, its buffer and the waits are the app's own
    (``chat.upstream.network``), so the work per chunk differs from the app's read only by the
    HTTP layers: httpx, httpcore and h11.
    """

    def __init__(self, stream: AsyncNetworkStream, host: str, path: str) -> None:
        self.stream, self.host, self.path = stream, host, path
        self.buffer = bytearray()

    async def _more(self) -> None:
        data = await self.stream.read(65536)
        if not data:
            raise ConnectionError("the connection closed mid-response")
        self.buffer += data

    async def _find(self, marker: bytes) -> int:
        while (found := self.buffer.find(marker)) < 0:
            await self._more()
        return found

    async def chunks(self, body: bytes) -> AsyncIterator[bytes]:
        await self.stream.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Accept: text/event-stream\r\nContent-Length: %d\r\n\r\n%s"
            % (self.path.encode(), self.host.encode(), len(body), body)
        )
        end = await self._find(b"\r\n\r\n")
        head = bytes(self.buffer[:end]).lower()
        del self.buffer[: end + 4]
        if not head.startswith(b"http/1.1 200") or b"transfer-encoding: chunked" not in head:
            raise ConnectionError(f"unexpected response: {head[:200]!r}")
        while True:
            line_end = await self._find(b"\r\n")
            size = int(bytes(self.buffer[:line_end]).split(b";", 1)[0], 16)
            while len(self.buffer) < line_end + 2 + size + 2:
                await self._more()
            data = bytes(self.buffer[line_end + 2 : line_end + 2 + size])
            del self.buffer[: line_end + 2 + size + 2]
            if not size:
                return
            yield data

    async def aclose(self) -> None:
        await self.stream.aclose()
