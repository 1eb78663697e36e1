"""What rendering a reply as Markdown while it streams costs the server, measured in this process.

The app feeds each coalesced delta to ``chat.incremental.IncrementalMarkdown`` and turns the update
into socket frames with ``chat.rendering.update_frames``; this does the same with the simulator's
Markdown passage (``style=markdown``), in deltas of the size the coalescing window makes, and
times it. No server is involved, so the figure is the renderer's alone, and comparing two reply
lengths shows whether the cost per token stays flat (linear) or grows with the reply.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from time import process_time

TOKENS_PER_DELTA = 6  # 200 tok/s over a 30 ms coalescing window


@dataclass
class RenderCost:
    tokens: int
    seconds: float  # CPU time of one whole reply, the median of the runs
    runs: list[float]
    frame_bytes: int
    html_bytes: int

    @property
    def per_token(self) -> float:
        return self.seconds / self.tokens


def setup_django() -> None:
    """Load the app's settings and models (``chat.rendering`` imports them); nothing is connected."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()


def render_cost(tokens: int, repeats: int) -> RenderCost:
    """Feed the ``tokens``-token Markdown reply to the renderer as the app does, ``repeats`` times."""
    from chat.incremental import IncrementalMarkdown
    from chat.rendering import body_part, update_frames
    from chat.simulator import markdown_tokens

    pieces = markdown_tokens(tokens)
    deltas = ["".join(pieces[i : i + TOKENS_PER_DELTA]) for i in range(0, len(pieces), TOKENS_PER_DELTA)]
    part = body_part(1)
    runs: list[float] = []
    frame_bytes = html_bytes = 0
    for _ in range(repeats):
        frames: list[str] = []
        started = process_time()  # CPU time: other processes on the machine do not count
        rendering = IncrementalMarkdown()
        for delta in deltas:
            frames += update_frames(part, rendering.feed(delta))
        frames += update_frames(part, rendering.end())
        html = rendering.html()
        runs.append(process_time() - started)
        frame_bytes = sum(len(frame.encode()) for frame in frames)
        html_bytes = len(html.encode())
    return RenderCost(
        tokens=tokens,
        seconds=statistics.median(runs),
        runs=runs,
        frame_bytes=frame_bytes,
        html_bytes=html_bytes,
    )
