"""Streams straight from the simulator, the baseline the app is compared with.

Two clients: ``raw`` (``bench/rawhttp.py``, the default: cheap per request and per event, so the
baseline is not slowed by the client) and ``httpx`` (what the app itself uses upstream).
"""

from __future__ import annotations

import json
from time import perf_counter

import httpx

from bench.rawhttp import Client as RawClient
from bench.rawhttp import Direct

__all__ = ["Client", "Direct", "HttpxClient", "RawClient", "make_client"]


class HttpxClient:
    def __init__(self, base: str, concurrency: int) -> None:
        size = concurrency + 16
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.base = base
        self.http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120, connect=10, pool=120))

    async def warm(self, count: int) -> None:
        return None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def stream(self, model: str, text: str) -> Direct:
        """One streamed completion of ``[{"role": "user", "content": text}]``."""
        body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True}
        result = Direct(start=perf_counter())
        try:
            async with self.http.stream("POST", f"{self.base}/chat/completions", json=body) as response:
                if response.status_code != 200:
                    result.error = f"HTTP {response.status_code}"
                    return result
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        result.done = perf_counter()
                        break
                    choices = json.loads(data).get("choices") or [{}]
                    content = (choices[0].get("delta") or {}).get("content")
                    if content:
                        if result.first is None:
                            result.first = perf_counter()
                        result.parts.append(content)
        except httpx.HTTPError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        if result.done is None and not result.error:
            result.error = "no [DONE]"
        return result


Client = HttpxClient | RawClient


def make_client(kind: str, base: str, concurrency: int) -> Client:
    if kind == "httpx":
        return HttpxClient(base, concurrency)
    return RawClient(base)
