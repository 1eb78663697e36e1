"""``make bench`` / ``python -m bench``: the app's figures against the project's upstream simulator.

Everything runs on this machine over loopback: the simulator (``manage.py simulate_upstream``), one
Daphne worker serving the app (SQLite, in-memory channel layer), and this process as the client
(a lean asyncio WebSocket client for the app, a lean HTTP client for the simulator). The
database-writes figure uses a second worker on a PostgreSQL database the bench creates and drops.
The Markdown render figure runs the renderer in this process, before anything starts; the browser
figures drive the system's Chromium through Playwright. Nothing is downloaded.

Figures (``--only``): render (Markdown rendering cost, in-process), search (100,000 messages on
SQLite and PostgreSQL, in child processes), long (1,000 messages against 2: open and send, a worker
of its own), limits (the limit check's cost per message on the database and on Redis, in child
processes), import (a 100 MB export file: time, write lock, peak memory, in child processes),
read (the upstream reader's CPU per chunk on each network backend, in a child process), memory,
ttft, lag, streams,
md-bytes and md-streams (Markdown replies through the app), browser, db.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from bench import (
    browser,
    direct,
    frame_write,
    imports,
    limits,
    long_conversations,
    markdown_replies,
    pg,
    procs,
    render,
    scenarios,
    search,
    upstream_read,
)
from bench.app import App, start_app
from bench.report import Report, cpu_pct, log, problems_text, verdict
from bench.stats import kib, ms, pair_ms, percentile, table

FIGURES = (
    "render",
    "long",
    "search",
    "limits",
    "import",
    "memory",
    "ttft",
    "read",
    "frames",
    "lag",
    "streams",
    "md-bytes",
    "md-streams",
    "browser",
    "db",
)

FULL = {
    "steps": "100,250,500,1000,1500",
    "stream_window": 8,
    "ttft_samples": 50,
    "ttft_probes": 60,
    "lag_repeats": 3,
    "db_replies": 5,
    "sockets": 1000,
    "md_replies": 5,
    "md_rounds": 3,
    "browser_repeats": 3,
    "browser_long_tokens": 20000,
    "search_repeats": 30,
}
QUICK = {
    "steps": "100,250,500",
    "stream_window": 4,
    "ttft_samples": 20,
    "ttft_probes": 24,
    "lag_repeats": 1,
    "db_replies": 2,
    "sockets": 300,
    "md_replies": 2,
    "md_rounds": 1,
    "browser_repeats": 1,
    "browser_long_tokens": 20000,
    "search_repeats": 10,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Full run: about nine minutes on 2 cores; --quick: about four. "
        f"Defaults of a full run: {FULL}; with --quick: {QUICK}.",
    )
    parser.add_argument("--quick", action="store_true", help="a faster, smaller run (see the defaults below)")
    parser.add_argument(
        "--only", default=",".join(FIGURES), help=f"comma-separated figures to run, from {','.join(FIGURES)}"
    )
    add = parser.add_argument
    add("--steps", help="concurrent streams to try, in order; the ramp stops at the first failing step")
    add("--stream-window", type=float, help="seconds every stream of a step should be live together")
    add(
        "--start-rate",
        type=float,
        default=50,
        help="messages sent per second while a ramp step builds up its streams (default 50)",
    )
    add("--stream-tps", type=float, default=20, help="pace of each ramp stream (default 20 tokens/s)")
    add(
        "--max-spread",
        type=float,
        default=60,
        help="longest a ramp step waits for its streams to start, in seconds; a step whose streams "
        "cannot all be live together within it fails (default 60)",
    )
    add(
        "--delay-limit-ms", type=float, default=100, help="p99 added delay a ramp step may have (default 100)"
    )
    add("--ttft-streams", type=int, default=100, help="live streams during the second TTFT run (100)")
    add("--ttft-samples", type=int, help="replies measured one at a time for TTFT")
    add("--ttft-probes", type=int, help="replies measured while the --ttft-streams streams run")
    add("--ttft-interval", type=float, default=0.25, help="seconds between those probes (default 0.25)")
    add("--ttft-tokens", type=int, default=10, help="reply length in the TTFT runs (default 10)")
    add("--ttft-tps", type=float, default=50, help="pace in the TTFT runs (default 50 tokens/s)")
    add("--lag-tokens", type=int, default=2000, help="reply length for the end-of-reply lag (2000)")
    add("--lag-tps", type=float, default=1000, help="pace for the end-of-reply lag (default 1000 tokens/s)")
    add("--lag-repeats", type=int, help="end-of-reply lag runs (the median is reported)")
    add("--db-replies", type=int, help="concurrent replies for the writes/frames/bytes figures")
    add("--db-tokens", type=int, default=2000, help="their length (default 2000 tokens)")
    add("--db-tps", type=float, default=200, help="their pace (default 200 tokens/s)")
    add("--sockets", type=int, help="idle sockets opened for the memory figure")
    add("--render-sizes", default="5000,20000", help="reply lengths rendered in-process (5000,20000)")
    add("--render-repeats", type=int, default=3, help="renders of each length (the median is reported)")
    add("--md-replies", type=int, help="concurrent Markdown replies for the bytes-against-HTML figure")
    add("--md-tokens", type=int, default=2000, help="their length (default 2000 tokens)")
    add("--md-tps", type=float, default=200, help="their pace (default 200 tokens/s)")
    add("--md-streams", type=int, default=100, help="live Markdown streams for their CPU per token (100)")
    add("--md-rounds", type=int, help="prose-then-Markdown rounds for that figure (the medians are compared)")
    add("--search-repeats", type=int, help="runs of each search query (the median and p95 are reported)")
    add("--long-repeats", type=int, default=9, help="runs of each long-conversation figure (the median)")
    add("--browser-repeats", type=int, help="runs of each watched reply in Chromium (the median is reported)")
    add("--browser-busy-tokens", type=int, default=2000, help="reply watched for main-thread time (2000)")
    add("--browser-busy-tps", type=float, default=200, help="its pace (default 200 tokens/s)")
    add("--browser-long-tokens", type=int, help="reply watched for long tasks (20000)")
    add("--browser-long-tps", type=float, default=500, help="its pace (default 500 tokens/s)")
    add(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL to create the bench database with (default %(default)s)",
    )
    add("--pg-database", default="chat_bench", help="database created and dropped (default %(default)s)")
    add(
        "--direct-client",
        choices=("raw", "httpx"),
        default="raw",
        help="client for the straight-from-the-simulator baselines (default raw: cheapest per event)",
    )
    add("--keep", action="store_true", help="keep the temporary directory (database, server logs)")
    add(
        "--workdir",
        help="where to make that directory (default: the system's temp dir; /dev/shm takes the disk "
        "out of the SQLite figures)",
    )
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.steps = [int(s) for s in str(args.steps).split(",") if s.strip()]
    args.render_sizes = [int(s) for s in str(args.render_sizes).split(",") if s.strip()]
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := args.only - set(FIGURES):
        parser.error(f"unknown figures: {', '.join(sorted(unknown))}")
    return args


def _half(values: list[float], which: int) -> float:
    middle = len(values) // 2
    return percentile(values[:middle] if which == 0 else values[middle:], 50)


async def measure(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    if "render" in args.only:  # first, while nothing else runs
        log(f"Markdown render in-process: {', '.join(map(str, args.render_sizes))} tokens")
        await _guard(report, "Markdown render", _render(args, report))
    # A worker and a simulator of its own, before the main ones start, and before the search
    # figures: seeding 110,000 messages leaves the databases writing for a while afterwards, which
    # Chromium's open times of the long conversation would feel.
    if "long" in args.only:
        await _guard(report, "Long conversations", long_conversations.figures(args, workdir, report))
    if "search" in args.only:  # also before the app starts: it has the machine to itself
        log("search over 100,000 messages: SQLite, then PostgreSQL")
        search.figures(
            pg_url=args.pg_url,
            pg_database=f"{args.pg_database}_search",
            workdir=workdir,
            repeats=args.search_repeats,
            report=report,
        )
    if "limits" in args.only:  # child processes of its own, before the app starts
        log("limit check: SQLite, then PostgreSQL")
        limits.figures(
            pg_url=args.pg_url, pg_database=f"{args.pg_database}_limits", workdir=workdir, report=report
        )
    if "import" in args.only:  # child processes of its own, before the app starts
        log("import: a large export file, then a tiny one, each in a child process")
        try:
            imports.figures(quick=args.quick, workdir=workdir, report=report)
        except Exception as exc:
            report.failed("Import of a large file", exc)
    if "frames" in args.only:  # bare Daphne workers of its own, before the app starts
        try:
            await frame_write.figures(workdir=workdir, report=report)
        except Exception as exc:
            report.failed("Daphne CPU per frame written", exc)
    if not args.only - {"render", "search", "long", "limits", "import", "frames"}:
        return
    log("starting the simulator")
    simulator, base = procs.start_simulator(workdir)
    apps: list[App] = []
    postgres: Postgres | None = None
    try:
        if "read" in args.only:  # the simulator only, before any worker starts
            try:
                upstream_read.figures(api_base=base, report=report)
            except Exception as exc:
                report.failed("Upstream read CPU per chunk", exc)
        if not args.only - {"render", "search", "long", "limits", "import", "frames", "read"}:
            return
        if "db" in args.only:
            try:
                postgres = await _start_postgres(args, workdir, report, simulator, base, apps)
            except Exception as exc:
                log(f"PostgreSQL worker failed: {exc!r}")
                report.failed("DB writes per reply (PostgreSQL)", exc)
                args.only.discard("db")
        await _main_worker(args, workdir, report, simulator, base, apps)
        if "db" in args.only:
            await _guard(
                report,
                "DB writes per reply (PostgreSQL)",
                _postgres_figures(args, report, simulator, apps, postgres),
            )
    finally:
        for app in apps:
            app.server.stop()
        simulator.stop()
        if postgres is not None:
            try:
                pg.drop(args.pg_url, args.pg_database)
            except Exception as exc:
                report.notes.append(f"Could not drop {args.pg_database}: {exc}")


def _conversations_needed(args: argparse.Namespace) -> int:
    need = 100
    if "memory" in args.only:
        need += args.sockets + 20
    if "ttft" in args.only:
        need += args.ttft_samples + args.ttft_probes + args.ttft_streams + 30
    if "lag" in args.only:
        need += args.lag_repeats + 1
    if "streams" in args.only:
        need += sum(args.steps)
    if "db" in args.only:
        need += args.db_replies
    if "md-bytes" in args.only:
        need += args.md_replies
    if "md-streams" in args.only:
        need += 2 * args.md_rounds * args.md_streams
    return need


async def _main_worker(
    args: argparse.Namespace,
    workdir: Path,
    report: Report,
    simulator: procs.Server,
    base: str,
    apps: list[App],
) -> None:
    log("migrating a fresh SQLite database, creating conversations, starting Daphne")
    app = start_app("app", f"sqlite:///{workdir}/db.sqlite3", base, workdir, _conversations_needed(args))
    apps.append(app)
    frames = await app.learn_snapshot()
    report.notes.append(
        f"Main worker: SQLite in {workdir} (an in-memory channel layer); a page connecting to a fresh "
        f"conversation gets {frames} frame(s) before it sends."
    )
    client = direct.make_client(args.direct_client, base, max(args.ttft_streams, 16) + 16)
    try:
        log("warming up (app and simulator)")
        await scenarios.ttft_app(app, simulator, 1, 3, args.ttft_tokens, args.ttft_tps)
        await scenarios.ttft_app(app, simulator, 20, 1, args.ttft_tokens, args.ttft_tps)
        await scenarios.ttft_direct(client, 20, 1, args.ttft_tokens, args.ttft_tps)

        if "memory" in args.only:
            log(f"memory: opening {args.sockets} idle sockets")
            await _guard(report, "Memory per idle WebSocket", _memory(app, args, report))
        if "ttft" in args.only:
            await _guard(report, "Time to first token", _ttft(app, simulator, client, args, report))
        if "lag" in args.only:
            log(f"end-of-reply lag: {args.lag_tokens} tokens at {args.lag_tps:g} tokens/s")
            await _guard(report, "End-of-reply lag", _lag(app, client, args, report))
        if "streams" in args.only:
            await _guard(report, "Streams per worker", _streams(app, simulator, args, report))
        if "md-bytes" in args.only:
            figure = "Bytes per reply with Markdown"
            await _guard(report, figure, markdown_replies.bytes_against_html(app, simulator, args, report))
        if "md-streams" in args.only:
            figure = "App CPU per token, Markdown replies"
            await _guard(report, figure, markdown_replies.cpu_per_token(app, simulator, args, report))
        if "browser" in args.only:
            await _guard(report, "Browser figures", _browser(app, args, report))
    finally:
        await client.aclose()


async def _guard(report: Report, figure: str, work: Any) -> None:
    try:
        await work
    except Exception as exc:
        log(f"{figure} failed: {exc!r}")
        report.failed(figure, exc)


async def _render(args: argparse.Namespace, report: Report) -> None:
    render.setup_django()
    render.render_cost(500, 1)  # warm-up: the first render imports lexers and compiles patterns
    costs = [render.render_cost(tokens, args.render_repeats) for tokens in args.render_sizes]
    for cost in costs:
        report.row(
            f"Markdown render, {cost.tokens:,}-token reply",
            f"{cost.seconds * 1000:.0f} ms ({cost.per_token * 1e6:.1f} us/token)",
        )
    report.details.append(
        f"Markdown render in this process (CPU time, median of {args.render_repeats}): the simulator's "
        f"Markdown passage in deltas of {render.TOKENS_PER_DELTA} tokens through IncrementalMarkdown and "
        "update_frames, then end(); "
        + "; ".join(
            f"{c.tokens:,} tokens: runs {', '.join(f'{x * 1000:.0f}' for x in c.runs)} ms, frames "
            f"{c.frame_bytes / 1000:.0f} kB for {c.html_bytes / 1000:.0f} kB of HTML "
            f"({c.frame_bytes / c.html_bytes:.2f}x)"
            for c in costs
        )
        + "."
    )
    if len(costs) >= 2:
        small, large = costs[0], costs[-1]
        ratio = large.per_token / small.per_token
        report.row(
            f"Markdown render, us/token at {large.tokens:,} vs {small.tokens:,} tokens",
            f"{ratio:.2f}x",
            "<= 1.5x (linear)",
            verdict(ratio <= 1.5),
        )


async def _browser(app: App, args: argparse.Namespace, report: Report) -> None:
    if (why := browser.unavailable()) is not None:
        log(f"browser figures skipped: {why}")
        report.row("Browser figures (Chromium)", f"skipped: {why}")
        return
    log(f"browser: Chromium, {args.browser_repeats} run(s) of each figure")
    browser.rows(report, await browser.measure(app, args), args)


async def _memory(app: App, args: argparse.Namespace, report: Report) -> None:
    result = await scenarios.memory(app, args.sockets)
    report.row(
        "Memory per idle WebSocket (RSS delta / sockets)",
        f"{kib(result.per_socket_kib)} ({args.sockets} sockets, "
        f"{kib(result.before_kib)} -> {kib(result.after_kib)})",
    )
    report.details.append(
        f"Memory: {result.sockets} sockets opened (32 at a time) in {result.open_seconds:.1f} s "
        f"= {1000 * result.open_seconds / result.sockets:.2f} ms per socket."
    )


async def _ttft(
    app: App, simulator: procs.Server, client: direct.Client, args: argparse.Namespace, report: Report
) -> None:
    tokens, tps, streams = args.ttft_tokens, args.ttft_tps, args.ttft_streams
    probe = f"demo?tokens={tokens}&tps={tps:g}"
    log(f"TTFT: {args.ttft_samples} replies one at a time, direct then through the app")
    alone = (
        await scenarios.ttft_direct(client, 1, args.ttft_samples, tokens, tps),
        await scenarios.ttft_app(app, simulator, 1, args.ttft_samples, tokens, tps),
    )
    log(f"TTFT: {args.ttft_probes} probes while {streams} streams run, direct then through the app")
    load = (args.ttft_probes, args.ttft_interval, tokens, tps, args.stream_tps, args.start_rate)
    loaded = (
        await scenarios.ttft_direct_loaded(client, streams, *load),
        await scenarios.ttft_app_loaded(app, simulator, streams, *load),
    )
    runs = (
        ("1 stream", alone[0], alone[1], None),
        (f"{streams} live streams", *(x.probes for x in loaded), loaded),
    )
    for label, straight, through, under in runs:
        report.row(f"TTFT direct from simulator, {label}, p50 / p99", pair_ms(straight.p(50), straight.p(99)))
        report.row(f"TTFT through the app, {label}, p50 / p99", pair_ms(through.p(50), through.p(99)))
        added50 = through.p(50) - straight.p(50)
        added99 = through.p(99) - straight.p(99)
        if under is None:
            report.row(f"TTFT added, {label}, p50 / p99", pair_ms(added50, added99))
            report.details.append(
                f"TTFT, {label}: {len(straight.values)} direct and {len(through.values)} app replies of "
                f"{probe}, one at a time, each on a fresh conversation and socket (opened beforehand); "
                f"app max {ms(max(through.values, default=math.nan))}."
            )
        else:
            report.row(f"TTFT added, {label}, p50", ms(added50), "<= 2 ms", verdict(added50 <= 0.002))
            report.row(f"TTFT added, {label}, p99", ms(added99), "<= 10 ms", verdict(added99 <= 0.010))
            app_run = under[1]
            report.details.append(
                f"TTFT, {label}: a probe ({probe}) every {args.ttft_interval * 1000:.0f} ms while "
                f"{streams} replies at {args.stream_tps:g} tok/s stream (started at {args.start_rate:g}/s; "
                f"all live after {app_run.ramp_seconds:.1f} s through the app); "
                f"{len(straight.values)} direct and {len(through.values)} app probes; "
                f"app max {ms(max(through.values, default=math.nan))}; "
                f"app p50 over the first half of the probes {ms(_half(through.values, 0))}, over the second "
                f"{ms(_half(through.values, 1))} (rising: replies wait in a growing queue); "
                f"during the probes app CPU {cpu_pct(through.cpu, 'app')}, simulator "
                f"{cpu_pct(through.cpu, 'simulator')}, bench {cpu_pct(through.cpu, 'bench')} of a core."
            )
            for name, run in zip(("direct", "app"), under, strict=True):
                if not run.all_live:
                    report.notes.append(
                        f"TTFT {label} {name}: some background streams ended before the probes did"
                    )
                if run.problems:
                    report.notes.append(f"TTFT {label} {name} background: {problems_text(run.problems)}")
        for name, samples in (("direct", straight), ("app", through)):
            if samples.problems:
                report.notes.append(f"TTFT {label} {name}: {problems_text(samples.problems)}")
                report.keep = True


async def _lag(app: App, client: direct.Client, args: argparse.Namespace, report: Report) -> None:
    result = await scenarios.end_lag(app, client, args.lag_tokens, args.lag_tps, args.lag_repeats)
    if result.problems:
        report.notes.append(f"End-of-reply lag: {problems_text(result.problems)}")
    if not result.app or not result.direct:
        report.row("End-of-reply lag", "no valid run", "< 50 ms", "MISS")
        return
    report.row(
        f"End-of-reply lag, 1 stream, {args.lag_tokens} tokens at {args.lag_tps:g} tok/s",
        ms(result.lag),
        "< 50 ms",
        verdict(result.lag < 0.050),
    )
    report.details.append(
        f"End-of-reply lag: app send->end {ms(statistics.median(result.app))}, simulator request->[DONE] "
        f"{ms(statistics.median(result.direct))} (median of {len(result.app)}); the page trailed the "
        f"simulator's schedule by at most {ms(max(result.trail))}; {statistics.median(result.frames):.0f} "
        f"frames for the reply."
    )


async def _streams(app: App, simulator: procs.Server, args: argparse.Namespace, report: Report) -> None:
    limit = args.delay_limit_ms / 1000
    best = 0
    failure = "every step passed"
    lines = [
        f"Streams at {args.stream_tps:g} tok/s, messages sent at {args.start_rate:g}/s; each reply lasts "
        f"long enough for all to be live together for ~{args.stream_window:g} s.",
        "  spread: first send to the last stream's first text; together: seconds all were live;",
        "  added: frames' lateness against the simulator's schedule (live p99: only while all were live);",
        "  TTFT includes the queue of replies waiting to start; CPU (% of a core), CPU/token: all live.",
        scenarios.STEP_COLUMNS,
    ]
    cpu_per_token, per_token_at = math.nan, 0
    rate = args.start_rate
    for streams in args.steps:
        for attempt in (1, 2):
            log(f"streams: {streams} at {args.stream_tps:g} tokens/s (assuming {rate:.0f} starts/s)")
            step = await scenarios.args_step(app, simulator, args, streams, rate)
            observed = streams / step.start_spread if step.start_spread > 0 else math.nan
            lines.append(step.line())
            if step.problems:
                lines.append(f"          problems: {problems_text(step.problems)}")
                report.keep = True
            if not math.isnan(observed):
                retry = step.ok == streams and not step.all_live > 0 and observed < rate and attempt == 1
                rate = min(args.start_rate, observed)
                if retry:
                    lines.append(f"          not all live at once; again, assuming {rate:.0f} starts/s")
                    continue
            break
        if not math.isnan(step.cpu_per_token) and (step.passed(limit) or math.isnan(cpu_per_token)):
            cpu_per_token, per_token_at = step.cpu_per_token, streams
        if not step.passed(limit):
            failure = f"{streams} failed: {step.why_not(limit)}"
            log(f"streams: {failure}")
            break
        best = streams
    value = f"{best if best else '< ' + str(args.steps[0])} ({failure})"
    report.row(
        f"Streams one worker sustains at {args.stream_tps:g} tok/s",
        value,
        ">= 1000",
        verdict(best >= 1000),
    )
    if not math.isnan(cpu_per_token):
        report.row(
            f"App CPU per token ({per_token_at} live streams at {args.stream_tps:g} tok/s)",
            f"{cpu_per_token * 1000:.3f} ms",
            "< 0.1 ms",
            verdict(cpu_per_token < 0.0001),
        )
    report.details.append("\n".join(lines))


@dataclass
class Postgres:
    """The second worker, on PostgreSQL, started and warmed up before the main worker's figures."""

    app: App
    url: str
    warmed_at: float  # when its warm-up ended (its connections then hold statistics back)


async def _start_postgres(
    args: argparse.Namespace,
    workdir: Path,
    report: Report,
    simulator: procs.Server,
    base: str,
    apps: list[App],
) -> Postgres | None:
    """Start it early: by the time its figure runs, the warm-up's statistics have been flushed."""
    try:
        pg.recreate(args.pg_url, args.pg_database)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log(f"PostgreSQL not available: {reason}")
        report.row("DB writes per reply (PostgreSQL)", f"skipped: {reason}")
        return None
    log(f"PostgreSQL database {args.pg_database}: migrating, starting a second Daphne")
    url = pg.database_url(args.pg_url, args.pg_database)
    try:
        app = start_app("app-postgres", url, base, workdir, args.db_replies + 60)
        apps.append(app)
        await app.learn_snapshot()
        await scenarios.ttft_app(app, simulator, 1, 3, args.ttft_tokens, args.ttft_tps)  # warm-up
    except BaseException:
        if apps and apps[-1].name == "app-postgres":
            apps.pop().server.stop()
        pg.drop(args.pg_url, args.pg_database)
        raise
    return Postgres(app=app, url=url, warmed_at=perf_counter())


async def _postgres_figures(
    args: argparse.Namespace,
    report: Report,
    simulator: procs.Server,
    apps: list[App],
    postgres: Postgres | None,
) -> None:
    label = f"{args.db_tokens} tokens at {args.db_tps:g} tok/s"
    if postgres is None:
        await _frames_on_sqlite(args, report, simulator, apps, label)
        return
    app = postgres.app
    with pg.connect(postgres.url) as stats:
        # The warm-up's connections stay open: its statistics may wait out the idle flush.
        since = perf_counter() - postgres.warmed_at
        before = pg.settled_counts(stats, first_wait=max(1.5, pg.IDLE_FLUSH_SECONDS + 1 - since))
        log(f"db: {args.db_replies} concurrent replies of {label}")
        result = await scenarios.batch(app, simulator, args.db_replies, args.db_tokens, args.db_tps)
        app.server.stop()  # its connections end, so every backend has flushed its statistics
        delta = pg.difference(pg.settled_counts(stats), before)
    n = len(result.replies)
    ins, upd, dele = (sum(v[i] for v in delta.values()) for i in range(3))
    report.row(
        f"DB writes per reply (PostgreSQL, {label})",
        f"{(ins + upd + dele) / n:.1f} (ins {ins / n:.1f}, upd {upd / n:.1f}, del {dele / n:.1f})",
    )
    per_table = ", ".join(f"{name} +{v[0]}/~{v[1]}/-{v[2]}" for name, v in sorted(delta.items()) if any(v))
    report.details.append(
        f"DB writes for {n} replies (rows inserted/updated/deleted): {per_table or 'none'}. "
        f"Writes per reply include the user's message and the conversation's updates."
    )
    _frame_rows(report, result, label)


async def _frames_on_sqlite(
    args: argparse.Namespace, report: Report, simulator: procs.Server, apps: list[App], label: str
) -> None:
    app = next((a for a in apps if a.name == "app"), None)
    if app is None or app.server.process.poll() is not None:
        return
    log(f"frames: {args.db_replies} concurrent replies of {label} (SQLite worker)")
    result = await scenarios.batch(app, simulator, args.db_replies, args.db_tokens, args.db_tps)
    _frame_rows(report, result, label)


def _frame_rows(report: Report, result: scenarios.Batch, label: str) -> None:
    n = len(result.replies)
    report.row(
        f"Frames per reply ({label})",
        f"{result.mean('frames'):.0f} ({result.mean('delta_frames'):.0f} deltas)",
    )
    report.row(
        f"Bytes per reply ({label})",
        f"{result.mean('bytes') / 1000:.1f} kB payload, "
        f"{result.mean('wire_bytes') / 1000:.1f} kB with frame headers",
    )
    if result.problems:
        report.notes.append(f"Replies of {label}: {problems_text(result.problems)}")
        report.keep = True
    per_token = result.cpu.get("app", math.nan) / result.tokens if result.tokens else math.nan
    report.details.append(
        f"{n} concurrent replies of {label}: app CPU {per_token * 1e6:.1f} us per token "
        f"({cpu_pct(result.cpu, 'app')} of a core), simulator {cpu_pct(result.cpu, 'simulator')}."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.raise_fd_limit()
    started = perf_counter()
    print(f"Machine: {procs.machine()}")
    print(
        "The app (one Daphne worker), the simulator and this client share those cores; "
        "CPU figures are % of one core.",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="chat-bench-", dir=args.workdir))
    report = Report()
    keep = args.keep
    try:
        asyncio.run(measure(args, workdir, report))
    except KeyboardInterrupt:
        keep = True
        print(f"Interrupted; logs kept in {workdir}", file=sys.stderr)
        return 130
    except Exception as exc:
        keep = True
        log(f"bench failed: {exc!r}; logs kept in {workdir}")
        report.failed("bench", exc)
    finally:
        keep = keep or report.keep
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(report.rows, ("Figure", "Value", "Target", "Result")))
    for detail in report.details:
        print()
        print(detail)
    if report.notes:
        print()
        print("Notes:")
        for note in report.notes:
            print(f"  {note}")
    print()
    print(f"Took {perf_counter() - started:.0f} s{' (--quick)' if args.quick else ''}.")
    if keep:
        print(f"Logs and database kept in {workdir}")
    return 0
