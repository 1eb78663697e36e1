"""``--only read``: what reading the upstream costs per chunk, through the app's own reader.

In a child process, ``chat.upstream.stream_chat`` reads replies of ``TOKENS`` tokens from the
simulator (``TPS`` tokens a second, so each token is its own write and, mostly, its own read, as
live streams are read) over loopback, ``ROUNDS`` times
for each network backend under httpx: anyio's (httpx's default) and the plain-asyncio one the app
uses (``chat.upstream.network``). The figure is the child's CPU time per token, the reading and
decoding included, the median of the rounds; the simulator's CPU is its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time

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
    report.row(
        f"Upstream read CPU per chunk ({TPS:,} tokens/s), httpx on anyio (httpx's default)",
        f"{anyio_us:.1f} us",
    )
    report.row(
        f"Upstream read CPU per chunk ({TPS:,} tokens/s), httpx on plain asyncio (the app's)",
        f"{asyncio_us:.1f} us ({(1 - asyncio_us / anyio_us) * 100:.0f}% less)",
    )


def worker() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    django.setup()
    import httpx

    from chat.upstream import client as upstream
    from chat.upstream.client import ChatRequest, Endpoint, stream_chat
    from chat.upstream.events import TextDelta

    endpoint = Endpoint(base_url=os.environ["BENCH_API_BASE"])
    model = f"demo?tokens={TOKENS}&tps={TPS}"
    request = ChatRequest(model=model, messages=[{"role": "user", "content": "go"}])

    async def one_round() -> float:
        tokens = 0
        started = time.process_time()
        async for event in stream_chat(endpoint, request):
            tokens += isinstance(event, TextDelta)
        assert tokens >= TOKENS * 0.9, tokens
        return (time.process_time() - started) / tokens

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
        assert isinstance(upstream.get_client()._transport, httpx.AsyncHTTPTransport)
        await upstream.close_clients()
        return result

    print(json.dumps(asyncio.run(main())))
