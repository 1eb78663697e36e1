"""``--only frames``: what Daphne costs per WebSocket frame it writes, apart from the app.

A bare ASGI app (``bench.frame_app``) under Daphne sends a frame the size of a streamed delta
every ``INTERVAL`` seconds on each of ``SOCKETS`` sockets, which cheap clients read. The figure is
the worker's CPU time per frame over a window when all of them are sending, for Twisted's own
write and for the app's write-through (``chat.twisted_writes``), less the same app pacing itself
without sending (its timers). Rounds alternate the three, and the medians are reported.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from bench import procs, wsclient
from bench.report import Report, log

SOCKETS = 200
INTERVAL = 0.1  # 2,000 frames a second in all
WINDOW = 6.0
ROUNDS = 3
KINDS = {
    "twisted": {"BENCH_FRAME_SEND": "1"},
    "through": {"BENCH_FRAME_SEND": "1", "BENCH_WRITE_THROUGH": "1"},
    "pacing": {"BENCH_FRAME_SEND": "0"},
}
FRAME_TEXT = "<span id=m-1-tail hx-swap-oob=beforeend>" + "word " * 12 + "</span>"  # a streamed delta's size


async def _reader(port: int) -> int:
    """One socket, read to its close; the frames it got."""
    sock = await wsclient.connect("127.0.0.1", port, "/frames", {})
    await sock.closed
    return sock.frames


async def _round(kind: str, env: dict[str, str], logdir: os.PathLike[str]) -> float:
    """The worker's CPU seconds per frame (per timer tick, for ``pacing``) over the window."""
    frames = int((WINDOW + 4) / INTERVAL)
    server = procs.Server(
        f"frames-{kind}",
        [*procs.WORKER, "-b", "127.0.0.1", "-p", "0", "bench.frame_app:application"],
        procs.base_env(BENCH_FRAMES=str(frames), BENCH_FRAME_INTERVAL=str(INTERVAL), **env),
        logdir,
    )
    try:
        port = int(server.wait_for(r"Listening on TCP address [\d.]+:(\d+)").group(1))
        readers = [asyncio.create_task(_reader(port)) for _ in range(SOCKETS)]
        await asyncio.sleep(2.0)  # every socket open; sending starts a second after each opens
        cpu, began = server.cpu_seconds(), time.monotonic()
        await asyncio.sleep(WINDOW)
        cpu, wall = server.cpu_seconds() - cpu, time.monotonic() - began
        got = await asyncio.gather(*readers)
        if env["BENCH_FRAME_SEND"] == "1" and not all(got):
            raise RuntimeError(f"frames-{kind}: a socket got no frame")
    finally:
        server.stop()
    return cpu / (wall * SOCKETS / INTERVAL)


async def figures(*, workdir: os.PathLike[str], report: Report) -> None:
    log(f"frames: {SOCKETS} sockets, a frame every {INTERVAL * 1000:.0f} ms each, {ROUNDS} rounds")
    results: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(ROUNDS):
        for kind, env in KINDS.items():
            results[kind].append(await _round(kind, env, workdir))
    pacing, twisted, through = (statistics.median(results[k]) * 1e6 for k in ("pacing", "twisted", "through"))
    report.row(
        f"Daphne CPU per frame written ({SOCKETS * int(1 / INTERVAL):,} frames/s), Twisted's write",
        f"{twisted - pacing:.1f} us",
    )
    report.row(
        "Daphne CPU per frame written, sent at once (the app's chat.twisted_writes)",
        f"{through - pacing:.1f} us ({(1 - (through - pacing) / (twisted - pacing)) * 100:.0f}% less)",
    )
    report.details.append(
        f"Frames: {SOCKETS} sockets of a bare ASGI app under Daphne, each sent a {len(FRAME_TEXT)}-character "
        f"frame every {INTERVAL * 1000:.0f} ms; worker CPU per frame over {WINDOW:g} s, median of {ROUNDS}: "
        f"Twisted's write {twisted:.1f} us, sent at once {through:.1f} us, the app's timers alone "
        f"{pacing:.1f} us (subtracted above)."
    )


FRAME_TEXT = "<span id=m-1-tail hx-swap-oob=beforeend>" + "word " * 12 + "</span>"
