"""Markdown replies through the app: what they cost on the wire, and per token at 100 live streams.

The simulator's ``style=markdown`` passage (headings, lists, a code block, a table) streams through
the main worker. The bytes of the reply's frames are compared with the HTML the app stored for it,
which is what the page shows in the end: sending more than twice that means the page was sent the
text more than once over (the open tail goes out as text and then again as rendered blocks). The
sent message shown back (its ``<article>``) is not part of the reply and is left out.

CPU per token is measured for prose and then for Markdown replies, at the same number of live
streams, back to back: the rise is what rendering costs, on the same machine in the same state.
"""

from __future__ import annotations

import argparse
import math
import statistics

from bench import procs, scenarios
from bench.app import App
from bench.report import Report, log, problems_text, verdict

STYLE = "markdown"


async def bytes_against_html(
    app: App, simulator: procs.Server, args: argparse.Namespace, report: Report
) -> None:
    tokens, tps = args.md_tokens, args.md_tps
    label = f"{tokens} tokens at {tps:g} tok/s, style=markdown"
    figure = f"Bytes per reply with Markdown ({label})"
    log(f"markdown bytes: {args.md_replies} concurrent replies of {label}")
    result = await scenarios.batch(app, simulator, args.md_replies, tokens, tps, STYLE, keep_html=True)
    if result.problems:
        report.notes.append(f"Markdown replies of {label}: {problems_text(result.problems)}")
        report.keep = True
    stored = app.stored_html([r.reply_id for r in result.replies if r.reply_id is not None])
    pairs = [(r, stored[r.reply_id]) for r in result.replies if stored.get(r.reply_id or "")]
    if not pairs:
        report.row(figure, "no reply with stored HTML", "<= 2x HTML", "MISS")
        return
    payload = statistics.fmean(r.bytes - r.echo_bytes for r, _ in pairs)
    deltas = statistics.fmean(r.delta_bytes for r, _ in pairs)
    html = statistics.fmean(len(h.encode()) for _, h in pairs)
    ratio = payload / html
    report.row(
        figure,
        f"{payload / 1000:.1f} kB of frames vs {html / 1000:.1f} kB final HTML = {ratio:.2f}x",
        "<= 2x HTML",
        verdict(ratio <= 2),
    )
    frames = statistics.fmean(r.frames for r, _ in pairs)
    text_frames = statistics.fmean(r.delta_frames for r, _ in pairs)
    same = sum(r.html == h for r, h in pairs)
    echo = statistics.fmean(r.echo_bytes for r, _ in pairs)
    report.details.append(
        f"Markdown replies ({len(pairs)} at once, {label}): {frames:.0f} frames ({text_frames:.0f} "
        f"text frames), {payload / 1000:.1f} kB per reply (and {echo / 1000:.1f} kB showing the sent "
        f"message back), of which {deltas / 1000:.1f} kB text frames "
        f"({deltas / html:.2f}x the stored HTML); the HTML the frames built equals the stored HTML in "
        f"{same} of {len(pairs)} replies; app CPU "
        f"{result.cpu.get('app', math.nan) / result.tokens * 1e6:.1f} us per token."
    )


async def cpu_per_token(app: App, simulator: procs.Server, args: argparse.Namespace, report: Report) -> None:
    streams = args.md_streams
    steps: dict[str, list[scenarios.Step]] = {"prose": [], STYLE: []}
    for round_ in range(1, args.md_rounds + 1):
        for style in steps:
            log(f"{style} streams {round_}/{args.md_rounds}: {streams} at {args.stream_tps:g} tokens/s")
            step = await scenarios.args_step(app, simulator, args, streams, args.start_rate, style)
            steps[style].append(step)
    lines = [
        f"Prose and Markdown replies in turn, {args.md_rounds} round(s), {streams} streams at "
        f"{args.stream_tps:g} tok/s (columns as above):",
        scenarios.STEP_COLUMNS,
    ]
    for pair in zip(*steps.values(), strict=True):
        for step in pair:
            lines.append(step.line())
            if step.problems:
                lines.append(f"          problems: {problems_text(step.problems)}")
                report.keep = True
    report.details.append("\n".join(lines))
    figure = f"App CPU per token, Markdown vs prose ({streams} live streams at {args.stream_tps:g} tok/s)"
    medians = {}
    for style, runs in steps.items():
        measured = [step.cpu_per_token for step in runs if not math.isnan(step.cpu_per_token)]
        if not measured:
            why = runs[-1].why_not(args.delay_limit_ms / 1000) or "the streams were never all live together"
            report.row(figure, f"n/a ({why})", "<= +20%", "MISS")
            return
        medians[style] = statistics.median(measured)
    prose, marked = medians["prose"], medians[STYLE]
    rise = marked / prose - 1
    report.row(
        figure,
        f"{marked * 1000:.3f} ms vs {prose * 1000:.3f} ms ({rise:+.0%}, medians of {args.md_rounds})",
        "<= +20%",
        verdict(rise <= 0.20),
    )
