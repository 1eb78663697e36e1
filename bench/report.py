"""The table a run builds: rows with their targets, details under it, notes on what went wrong."""

from __future__ import annotations

import math
import sys
import traceback
from collections import Counter
from dataclasses import dataclass, field
from time import perf_counter

_T0 = perf_counter()


def log(text: str) -> None:
    print(f"[{perf_counter() - _T0:6.1f}s] {text}", file=sys.stderr, flush=True)


Row = tuple[str, str, str, str]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    keep: bool = False  # something went wrong in the app: keep its log and database

    def row(self, figure: str, value: str, target: str = "", result: str = "") -> None:
        self.rows.append((figure, value, target, result))

    def failed(self, figure: str, exc: BaseException) -> None:
        self.row(figure, f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}")
        self.notes.append(f"{figure} failed:\n" + "".join(traceback.format_exception(exc))[-1500:])


def cpu_pct(cpu: dict[str, float], name: str) -> str:
    wall = cpu.get("wall") or math.nan
    return f"{100 * cpu.get(name, math.nan) / wall:.0f}%"


def problems_text(counter: Counter[str]) -> str:
    return "; ".join(f"{n}x {why}" for why, n in counter.most_common(3))
