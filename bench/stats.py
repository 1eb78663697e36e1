"""Percentiles and formatting."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolated linearly between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f} ms"


def pair_ms(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{a * 1000:.1f} / {b * 1000:.1f} ms"


def kib(value: float) -> str:
    return f"{value:.1f} KiB" if value < 1024 else f"{value / 1024:.2f} MiB"


def table(rows: list[tuple[str, str, str, str]], header: tuple[str, str, str, str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    lines = []
    for i, row in enumerate([header, *rows]):
        lines.append("  ".join(str(cell).ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
