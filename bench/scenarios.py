"""The measurements: each drives the app (and, for baselines, the simulator) and returns figures."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from time import perf_counter

from bench import direct, procs
from bench.app import App, demo_model, expected, message, problem, run_reply
from bench.report import cpu_pct
from bench.stats import ms, pair_ms, percentile
from bench.wsclient import Reply


class Cpu:
    """CPU seconds used by the app, the simulator and the bench itself over a window."""

    def __init__(self, app: App, simulator: procs.Server) -> None:
        self.pids = {"app": app.server.pid, "simulator": simulator.pid}
        self.start = {name: procs.cpu_seconds(pid) for name, pid in self.pids.items()}
        self.own = procs.own_cpu_seconds()
        self.wall = perf_counter()

    def stop(self) -> dict[str, float]:
        used = {name: procs.cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        used["bench"] = procs.own_cpu_seconds() - self.own
        used["wall"] = perf_counter() - self.wall
        return used


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)
    problems: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)

    def p(self, q: float) -> float:
        return percentile(self.values, q)


# --- Time to first token ---------------------------------------------------------------------------


async def _lanes(concurrency: int, per_lane: int, period: float, one) -> None:
    """``concurrency`` lanes, each running ``per_lane`` streams in turn; starts spread over ``period``."""

    async def lane(i: int) -> None:
        await asyncio.sleep(i * period / concurrency)
        for j in range(per_lane):
            await one(i, j)

    await asyncio.gather(*(lane(i) for i in range(concurrency)))


async def ttft_app(
    app: App, simulator: procs.Server, concurrency: int, per_lane: int, tokens: int, tps: float
) -> Samples:
    """Send → first frame adding text, each stream on a fresh conversation and socket, opened beforehand."""
    model = demo_model(tokens, tps)
    sockets = await app.open_many(app.take(concurrency * per_lane))
    out = Samples()

    async def one(i: int, j: int) -> None:
        sock = sockets[i * per_lane + j]
        text = f"Latency probe {i}-{j}: what is new?"
        reply = await run_reply(sock, text, model, expected(text, tokens), within=tokens / tps + 30)
        sock.close()
        if (why := problem(reply)) is not None:
            out.problems[why] += 1
        if reply.first is not None:
            out.values.append(reply.first - reply.sent)

    cpu = Cpu(app, simulator)
    await _lanes(concurrency, per_lane, tokens / tps, one)
    out.cpu = cpu.stop()
    return out


async def ttft_direct(
    client: direct.Client, concurrency: int, per_lane: int, tokens: int, tps: float
) -> Samples:
    """Request → first non-empty ``delta.content`` straight from the simulator."""
    model = demo_model(tokens, tps)
    out = Samples()
    await client.warm(concurrency)

    async def one(i: int, j: int) -> None:
        text = f"Latency probe {i}-{j}: what is new?"
        result = await client.stream(model, text)
        if result.error or result.text != expected(text, tokens)[0]:
            out.problems[result.error or "text differs"] += 1
        if result.first is not None:
            out.values.append(result.first - result.start)

    await _lanes(concurrency, per_lane, tokens / tps, one)
    return out


@dataclass
class Loaded:
    """Probes' TTFT while ``streams`` other streams were live."""

    probes: Samples
    streams: int
    ramp_seconds: float = math.nan  # until every background stream had its first text
    all_live: bool = False  # every probe went out while every background stream was live
    problems: Counter[str] = field(default_factory=Counter)  # of the background streams


def _background_tokens(streams: int, probes: int, interval: float, tps: float, start_rate: float) -> int:
    """Long enough to outlast the probes even when the app is slow; they are stopped after them."""
    return math.ceil(tps * (4 * streams / start_rate + 2 * probes * interval + 60))


STOP = json.dumps({"action": "stop"})


async def ttft_app_loaded(
    app: App,
    simulator: procs.Server,
    streams: int,
    probes: int,
    interval: float,
    tokens: int,
    tps: float,
    background_tps: float,
    start_rate: float,
) -> Loaded:
    """Send → first text of a probe every ``interval`` s while ``streams`` replies are live.

    The background replies are stopped (Stop, as from the page) once the probes are done.
    """
    bg_tokens = _background_tokens(streams, probes, interval, background_tps, start_rate)
    bg_model, model = demo_model(bg_tokens, background_tps), demo_model(tokens, tps)
    background = await app.open_many(app.take(streams))
    probe_sockets = await app.open_many(app.take(probes))
    out = Loaded(probes=Samples(), streams=streams)
    started = perf_counter()
    bg_texts = [f"Background stream {i}: keep talking." for i in range(streams)]
    bg_replies: list[Reply] = []
    for i, sock in enumerate(background):
        await _until(started + i / start_rate)
        bg_replies.append(sock.start(message(bg_texts[i], bg_model), expected(bg_texts[i], bg_tokens)))
    await asyncio.wait([r.began for r in bg_replies], timeout=streams / start_rate * 10 + 60)
    out.ramp_seconds = perf_counter() - started
    cpu = Cpu(app, simulator)
    probe_replies: list[Reply] = []
    begin = perf_counter()
    for j, sock in enumerate(probe_sockets):
        await _until(begin + j * interval)
        text = f"Latency probe {j}: what is new?"
        probe_replies.append(sock.start(message(text, model), expected(text, tokens)))
    await wait_all(probe_replies, cap=tokens / tps + 300)
    out.probes.cpu = cpu.stop()
    out.all_live = all(r.status is None for r in bg_replies)
    for sock in background:
        sock.send_text(STOP)
    await asyncio.wait([r.done for r in bg_replies], timeout=60)
    for reply in probe_replies:
        if (why := problem(reply)) is not None:
            out.probes.problems[why] += 1
        if reply.first is not None:
            out.probes.values.append(reply.first - reply.sent)
    for reply in bg_replies:
        if (why := problem(reply, stopped=True)) is not None:
            out.problems[why] += 1
    for sock in background + probe_sockets:
        sock.close()
    await asyncio.sleep(1.0)
    return out


async def ttft_direct_loaded(
    client: direct.Client,
    streams: int,
    probes: int,
    interval: float,
    tokens: int,
    tps: float,
    background_tps: float,
    start_rate: float,
) -> Loaded:
    """Request → first text of a probe every ``interval`` s while ``streams`` streams are live."""
    bg_tokens = _background_tokens(streams, probes, interval, background_tps, start_rate)
    bg_model, model = demo_model(bg_tokens, background_tps), demo_model(tokens, tps)
    await client.warm(streams + 8)
    out = Loaded(probes=Samples(), streams=streams)
    started = perf_counter()
    bg_tasks: list[asyncio.Task[direct.Direct]] = []
    for i in range(streams):
        await _until(started + i / start_rate)
        bg_tasks.append(asyncio.create_task(client.stream(bg_model, f"Background stream {i}: keep talking.")))
    await asyncio.sleep(0.5)
    out.ramp_seconds = perf_counter() - started

    async def probe(j: int) -> None:
        await _until(begin + j * interval)
        text = f"Latency probe {j}: what is new?"
        result = await client.stream(model, text)
        if result.error or result.text != expected(text, tokens)[0]:
            out.probes.problems[result.error or "text differs"] += 1
        if result.first is not None:
            out.probes.values.append(result.first - result.start)

    begin = perf_counter()
    await asyncio.gather(*(probe(j) for j in range(probes)))
    out.all_live = not any(task.done() for task in bg_tasks)
    for task in bg_tasks:
        task.cancel()
    for result in await asyncio.gather(*bg_tasks, return_exceptions=True):
        if isinstance(result, direct.Direct) and result.error:
            out.problems[result.error] += 1
    return out


async def wait_all(replies: list[Reply], cap: float, idle: float = 30) -> None:
    """Wait for every reply to end, while they make progress: give up after ``idle`` seconds in which
    no unfinished reply received a frame, or after ``cap`` seconds in all."""
    deadline = perf_counter() + cap
    seen, quiet_since = -1, perf_counter()
    while perf_counter() < deadline:
        pending = [r.done for r in replies if not r.done.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=min(5.0, max(deadline - perf_counter(), 0.01)))
        frames = sum(r.frames for r in replies)
        if frames != seen:
            seen, quiet_since = frames, perf_counter()
        elif perf_counter() - quiet_since > idle:
            return


async def _until(moment: float) -> None:
    delay = moment - perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


# --- Concurrent streams ----------------------------------------------------------------------------


@dataclass
class Step:
    streams: int
    tokens_each: int = 0
    ok: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    lateness: list[float] = field(default_factory=list)
    steady_lateness: list[float] = field(default_factory=list)  # frames while every stream was live
    ttft: list[float] = field(default_factory=list)
    frames: int = 0
    open_seconds: float = 0.0
    start_spread: float = math.nan  # first send to the last stream's first text
    all_live: float = math.nan  # seconds during which every stream was live at once
    peak_live: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # over the whole step
    steady_cpu: dict[str, float] = field(default_factory=dict)  # while every stream was live
    steady_tokens: int = 0
    error: str = ""

    @property
    def late_p50(self) -> float:
        return percentile(self.lateness, 50)

    @property
    def late_p99(self) -> float:
        return percentile(self.lateness, 99)

    @property
    def cpu_per_token(self) -> float:
        """App CPU seconds per token relayed while every stream was live (NaN if never)."""
        if not self.steady_tokens:
            return math.nan
        return self.steady_cpu.get("app", math.nan) / self.steady_tokens

    def passed(self, limit: float) -> bool:
        return not self.why_not(limit)

    def why_not(self, limit: float) -> str:
        if self.error:
            return self.error
        if self.ok != self.streams:
            top = ", ".join(f"{n}x {why}" for why, n in self.problems.most_common(2))
            return f"{self.streams - self.ok} bad streams ({top})"
        if not self.all_live > 0:
            return f"at most {self.peak_live} streams were live at once"
        if not self.late_p99 < limit:
            return f"p99 added delay {self.late_p99 * 1000:.0f} ms"
        return ""

    def line(self) -> str:
        """The step as a row under ``STEP_COLUMNS``."""
        steady = self.steady_cpu or {}
        return (
            f"  {self.streams:>7} {self.tokens_each:>6} {self.ok:>5} {self.start_spread:>6.1f}s "
            f"{self.all_live:>7.1f}s {pair_ms(self.late_p50, self.late_p99):>16} "
            f"{ms(percentile(self.steady_lateness, 99), 0):>8} "
            f"{ms(max(self.lateness, default=math.nan), 0):>7} "
            f"{pair_ms(percentile(self.ttft, 50), percentile(self.ttft, 99)):>17} "
            f"{self.frames / self.streams:>6.0f} {cpu_pct(steady, 'app'):>5} "
            f"{cpu_pct(steady, 'simulator'):>5} {cpu_pct(steady, 'bench'):>5} "
            f"{self.cpu_per_token * 1e6:>10.1f} us"
        )


STEP_COLUMNS = (
    f"  {'streams':>7} {'tokens':>6} {'ok':>5} {'spread':>7} {'together':>8} {'added p50/p99':>16} "
    f"{'live p99':>8} {'max':>7} {'TTFT p50/p99':>17} {'frames':>6} {'app':>5} {'sim':>5} {'bench':>5} "
    f"{'app CPU/token':>13}"
)


def lateness(reply: Reply, ends: tuple[int, ...], tps: float) -> list[float]:
    """Each text frame's arrival minus when its last token was due on the simulator's schedule.

    A frame's last token is the one ending at the position the page reached with it
    (``Reply.offsets``: always a token end, as the app relays whole tokens).

    The schedule starts at the arrival of the first text: token ``k`` is due ``k / tps`` later.
    """
    if not reply.times:
        return []
    first_token = bisect_left(ends, reply.offsets[0])
    start = reply.times[0] - first_token / tps
    pairs = zip(reply.times, reply.offsets, strict=True)
    return [t - start - bisect_left(ends, off) / tps for t, off in pairs]


def _peak(replies: list[Reply]) -> int:
    events = sorted(
        [(r.first, 1) for r in replies if r.first is not None]
        + [(r.end, -1) for r in replies if r.first is not None and r.end is not None]
    )
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    return peak


async def args_step(
    app: App,
    simulator: procs.Server,
    args: argparse.Namespace,
    streams: int,
    rate: float,
    style: str = "prose",
) -> Step:
    """``ramp_step`` with the bench's stream options (``--stream-tps``, ``--start-rate``, ...)."""
    return await ramp_step(
        app,
        simulator,
        streams,
        args.stream_tps,
        args.start_rate,
        args.stream_window,
        rate,
        args.max_spread,
        style=style,
    )


async def ramp_step(
    app: App,
    simulator: procs.Server,
    streams: int,
    tps: float,
    pace: float,
    window: float,
    starts_per_second: float,
    max_spread: float = 60,
    style: str = "prose",
) -> Step:
    """``streams`` replies at once, each on its own conversation and socket.

    Messages go out at ``pace`` a second; the app starts replies at its own pace (about
    ``starts_per_second``, from the previous step), so each reply lasts long enough for every
    stream to be live together for about ``window`` seconds, if they all start within
    ``max_spread`` seconds (which bounds how long a step takes). ``style`` is the simulator's
    (``markdown``: every reply is its Markdown passage).
    """
    stagger = streams / pace
    spread = min(max(stagger, streams / starts_per_second) * 1.25, max_spread)
    tokens = math.ceil(tps * (spread + window))
    step = Step(streams=streams, tokens_each=tokens)
    model = demo_model(tokens, tps, style)
    conversations = app.take(streams)
    opened = perf_counter()
    try:
        sockets = await app.open_many(conversations)
    except RuntimeError as exc:
        step.error = str(exc)
        return step
    step.open_seconds = perf_counter() - opened
    texts = [f"Load stream {i} of {streams}: keep talking." for i in range(streams)]
    wants = [expected(text, tokens, style) for text in texts]
    ends = [want[1] for want in wants]
    replies: list[Reply] = []
    samples: list[tuple[float, dict[str, float], int]] = []

    async def sample() -> None:
        cpu = Cpu(app, simulator)
        while True:
            pairs = zip(ends, replies, strict=False)  # replies grows while messages go out
            relayed = sum(bisect_right(e, r.offsets[-1]) for e, r in pairs if r.offsets)
            samples.append((perf_counter(), cpu.stop(), relayed))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    cpu = Cpu(app, simulator)
    start = perf_counter()
    for i, sock in enumerate(sockets):
        delay = start + i * stagger / streams - perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        replies.append(sock.start(message(texts[i], model), wants[i]))
    await wait_all(replies, cap=10 * (spread + tokens / tps) + 120)
    step.cpu = cpu.stop()
    sampler.cancel()
    now = perf_counter()
    for reply in replies:
        if reply.status is None:
            reply.problems.append("no ending in time")
            reply.finish("timeout", now)
    for sock in sockets:
        sock.close()
    late: list[list[float]] = []
    for reply in replies:
        why = problem(reply)
        if why is None:
            step.ok += 1
        else:
            step.problems[why] += 1
        late.append(lateness(reply, reply.ends, tps))
        step.lateness.extend(late[-1])
        if reply.first is not None:
            step.ttft.append(reply.first - reply.sent)
        step.frames += reply.frames
    firsts = [r.first for r in replies if r.first is not None]
    if len(firsts) == streams:
        last_first = max(firsts)
        first_end = min(r.end for r in replies if r.end is not None)
        step.start_spread = last_first - start
        step.all_live = first_end - last_first
        step.steady_lateness = [
            x
            for reply, xs in zip(replies, late, strict=True)
            for t, x in zip(reply.times, xs, strict=True)
            if last_first <= t <= first_end
        ]
        steady = [s for s in samples if last_first <= s[0] <= first_end]
        if len(steady) >= 2:
            (_, cpu0, tokens0), (_, cpu1, tokens1) = steady[0], steady[-1]
            step.steady_cpu = {k: cpu1[k] - cpu0[k] for k in cpu1}
            step.steady_tokens = tokens1 - tokens0
    step.peak_live = _peak(replies)
    await asyncio.sleep(1.5)  # let the app drop the sockets before the next step
    return step


# --- End-of-reply lag ------------------------------------------------------------------------------


@dataclass
class Lag:
    app: list[float] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)
    trail: list[float] = field(default_factory=list)  # largest lateness of a frame in the app's reply
    frames: list[int] = field(default_factory=list)
    problems: Counter[str] = field(default_factory=Counter)

    @property
    def lag(self) -> float:
        return statistics.median(self.app) - statistics.median(self.direct)


async def end_lag(app: App, client: direct.Client, tokens: int, tps: float, repeats: int) -> Lag:
    """Send → ending frame through the app, against request → ``[DONE]`` from the simulator."""
    out = Lag()
    model = demo_model(tokens, tps)
    for k in range(repeats):
        text = f"Fast stream {k}: say a lot, quickly."
        result = await client.stream(model, text)
        if result.error or result.done is None or result.text != expected(text, tokens)[0]:
            out.problems[f"direct: {result.error or 'text differs'}"] += 1
        else:
            out.direct.append(result.done - result.start)
        sock = await app.open(app.take(1)[0])
        reply = await run_reply(sock, text, model, expected(text, tokens), within=tokens / tps + 60)
        sock.close()
        if (why := problem(reply)) is not None:
            out.problems[why] += 1
        elif reply.end is not None:
            out.app.append(reply.end - reply.sent)
            out.trail.append(max(lateness(reply, reply.ends, tps)))
            out.frames.append(reply.frames)
        await asyncio.sleep(0.3)
    return out


# --- Replies at a moderate pace: frames, bytes (and, on PostgreSQL, writes) ---------------------------


@dataclass
class Batch:
    replies: list[Reply] = field(default_factory=list)
    problems: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    tokens: int = 0

    def mean(self, attribute: str) -> float:
        ok = [getattr(r, attribute) for r in self.replies]
        return statistics.fmean(ok) if ok else float("nan")


async def batch(
    app: App,
    simulator: procs.Server,
    count: int,
    tokens: int,
    tps: float,
    style: str = "prose",
    *,
    keep_html: bool = False,
) -> Batch:
    """``count`` replies at once; their frames include the acknowledgement and anything after the end.

    With ``keep_html`` each reply keeps the HTML its frames inserted (``Reply.html``).
    """
    out = Batch()
    model = demo_model(tokens, tps, style)
    sockets = await app.open_many(app.take(count))
    texts = [f"Steady stream {i}: tell me about storage." for i in range(count)]
    cpu = Cpu(app, simulator)
    replies = [
        sock.start(message(text, model), expected(text, tokens, style), keep_html=keep_html)
        for sock, text in zip(sockets, texts, strict=True)
    ]
    await wait_all(replies, cap=tokens / tps + 300)
    out.cpu = cpu.stop()
    await asyncio.sleep(0.5)  # frames that follow the ending (the conversation's state) count too
    for sock in sockets:
        sock.close()
    for reply in replies:
        if reply.status is None:
            reply.finish("timeout", perf_counter())
        if (why := problem(reply)) is not None:
            out.problems[why] += 1
        out.replies.append(reply)
        out.tokens += tokens
    return out


# --- Memory per idle socket ------------------------------------------------------------------------


@dataclass
class Memory:
    sockets: int
    before_kib: int
    after_kib: int
    open_seconds: float

    @property
    def per_socket_kib(self) -> float:
        return (self.after_kib - self.before_kib) / self.sockets


async def memory(app: App, count: int) -> Memory:
    warm = await app.open_many(app.take(20))
    for sock in warm:
        sock.close()
    await asyncio.sleep(1.0)
    before = app.server.rss_kib()
    opened = perf_counter()
    sockets = await app.open_many(app.take(count))
    seconds = perf_counter() - opened
    await asyncio.sleep(1.5)
    after = app.server.rss_kib()
    for sock in sockets:
        sock.close()
    await asyncio.sleep(1.0)
    return Memory(sockets=count, before_kib=before, after_kib=after, open_seconds=seconds)
