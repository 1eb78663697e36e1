"""A daily bar chart as SVG, drawn on the server: no charting library, no script on the page.

The markup is built with ``format_html``, so every value in it is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT = 720, 180
TOP, BOTTOM, LEFT = 12, 24, 56  # room for the axis labels


def daily_bars(points: Sequence[tuple[date, int]], *, label: str) -> SafeString:
    """One bar per day; a title on each bar carries its day and value (for pointers and readers)."""
    peak = max((value for _, value in points), default=0) or 1
    count = max(len(points), 1)
    slot = (WIDTH - LEFT) / count
    plot = HEIGHT - TOP - BOTTOM
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" class="bar"><title>{}: {}</title></rect>',
        (
            (
                f"{LEFT + n * slot + slot * 0.15:.1f}",
                f"{TOP + plot - plot * value / peak:.1f}",
                f"{slot * 0.7:.1f}",
                f"{plot * value / peak:.1f}",
                day.isoformat(),
                f"{value:,}",
            )
            for n, (day, value) in enumerate(points)
        ),
    )
    first = points[0][0].isoformat() if points else ""
    last = points[-1][0].isoformat() if points else ""
    return format_html(
        '<svg class="usage-chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}">'
        '<line x1="{left}" y1="{base}" x2="{w}" y2="{base}" class="axis"/>'
        '<text x="{tx}" y="{ty}" class="axis-label" text-anchor="end">{peak}</text>'
        '<text x="{tx}" y="{base}" class="axis-label" text-anchor="end">0</text>'
        "{bars}"
        '<text x="{left}" y="{h}" class="axis-label">{first}</text>'
        '<text x="{w}" y="{h}" class="axis-label" text-anchor="end">{last}</text>'
        "</svg>",
        w=WIDTH,
        h=HEIGHT - 4,
        label=label,
        left=LEFT,
        base=TOP + plot,
        tx=LEFT - 6,
        ty=TOP + 4,
        peak=f"{peak:,}",
        bars=bars,
        first=first,
        last=last,
    )
