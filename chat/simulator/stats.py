"""What reached a simulator, counted for tests and benchmarks to check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimulatorStats:
    """Counters for tests to check what reached the server.

    Mutated only on the simulator's event loop; plain int reads from other threads are safe.
    A stream is *completed* when it reached the end its fault planned (a cut-off counts), and
    *aborted* when the client went away first (including during a stall).
    """

    connections: int = 0
    requests: int = 0
    chat_requests: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_aborted: int = 0
    rejected_stream_options: int = 0  # 400s from ``reject-stream-options``
    last_chat_body: dict[str, Any] | None = None  # (its ``messages``: what a request carried)
    last_chat_at: float | None = None  # ``time.perf_counter()`` when it had arrived whole
    last_headers: dict[str, str] = field(default_factory=dict)

    @property
    def active_streams(self) -> int:
        return self.streams_started - self.streams_completed - self.streams_aborted
