"""The bare ASGI app ``--only frames`` runs under Daphne: a paced frame on every socket (see frame_write)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bench.frame_write import FRAME_TEXT

if os.environ.get("BENCH_WRITE_THROUGH") == "1":
    from chat import twisted_writes

    twisted_writes.install()

FRAMES = int(os.environ.get("BENCH_FRAMES", "100"))
INTERVAL = float(os.environ.get("BENCH_FRAME_INTERVAL", "0.1"))
SEND = os.environ.get("BENCH_FRAME_SEND", "1") == "1"


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await asyncio.sleep(1.0)
    message = {"type": "websocket.send", "text": FRAME_TEXT}
    for _ in range(FRAMES):
        if SEND:
            await send(message)
        await asyncio.sleep(INTERVAL)
    await send({"type": "websocket.close"})
