"""``--only long``: a 1,000-message conversation against a 2-message one, opened and sent in.

A worker of its own (SQLite) is seeded with two conversations through ``manage.py shell``: one of
1,000 messages of about 1 KB of Markdown each (questions as typed text, answers with their stored
``content_html``, as ended replies have), about 1 MB of text in all, and one of 2 messages. For
each, the median of N runs of:

- the server's time to answer ``GET /c/<uuid>/`` (request sent to the last byte read);
- Chromium opening that page: navigation start to DOMContentLoaded, to load, and to the first
  contentful paint (the messages are the page's content);
- a Send on its socket to the request reaching the upstream: the upstream is a simulator on a
  thread of this process, which notes ``perf_counter()`` as each request arrives (the clock this
  client's send time is taken from), and the messages that request carried.

The simulator reports a context window of ``CONTEXT_LENGTH`` tokens on ``/models``, so the long
conversation is cut to fit it, as a real server's would be.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import httpx

from bench import browser, procs
from bench.app import App, demo_model, expected, message, start_app
from bench.report import Report, log
from bench.stats import ms
from chat.simulator import SimulatorConfig, SimulatorThread

LONG = 1000
SHORT = 2
CONTEXT_LENGTH = 32_768  # as CHAT_CONTEXT_LENGTH's default
REPLY_TOKENS = 5
REPEATS = 9

_SEED = """
import os
from django.contrib.auth import get_user_model
from django.db import transaction
from chat import markdown, search
from chat.models import Conversation, Message
from chat.simulator import markdown_tokens

user = get_user_model().objects.get(username="bench")
passage = "".join(markdown_tokens(400))
answer_text = passage[: passage.rfind("\\n", 0, 1000)].strip()
question = "How would you explain this part of the design, and what would you change first? "
question_text = (question * 13)[:1000]
for count in (int(os.environ["BENCH_LONG"]), int(os.environ["BENCH_SHORT"])):
    with transaction.atomic():
        conversation = Conversation.objects.create(owner=user, title=f"{count} messages", model="demo")
        parent = None
        ids = []
        for n in range(count):
            if n % 2 == 0:
                parent = Message.objects.create(
                    conversation=conversation, parent=parent, role="user",
                    content=f"Question {n // 2}: {question_text}",
                )
            else:
                text = f"Answer {n // 2}\\n\\n{answer_text}"
                parent = Message.objects.create(
                    conversation=conversation, parent=parent, role="assistant", content=text,
                    content_html=markdown.render(text), model="demo", completion_tokens=250,
                    first_token_ms=120, duration_ms=1500,
                )
            ids.append(parent.pk)
        search.index_messages(ids)
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent, version=1)
    print("CONV", count, conversation.pk)
"""

# Loaded and painted: the first contentful paint may come after the load event.
_OPENED = """() => performance.getEntriesByType("navigation")[0].loadEventEnd > 0
  && performance.getEntriesByName("first-contentful-paint").length > 0"""

# In the page once it has loaded: navigation timings (ms from navigation start) and its messages.
_OPEN_TIMINGS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  return [nav.domContentLoadedEventEnd, nav.loadEventEnd, paint ? paint.startTime : NaN,
          document.querySelectorAll("#messages article").length];
}"""


@dataclass
class Side:
    """What was measured on one conversation."""

    messages: int
    conversation: str
    page_bytes: int = 0
    server: list[float] = field(default_factory=list)
    dom_ready: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    painted: list[float] = field(default_factory=list)
    articles: int = 0
    to_upstream: list[float] = field(default_factory=list)
    first_text: list[float] = field(default_factory=list)
    sent_messages: int = 0
    problems: list[str] = field(default_factory=list)


async def figures(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    repeats = max(1, getattr(args, "long_repeats", None) or REPEATS)
    simulator = SimulatorThread(
        config=SimulatorConfig(tokens_per_second=0, reply_tokens=REPLY_TOKENS, context_length=CONTEXT_LENGTH)
    )
    simulator.start()
    app: App | None = None
    try:
        log(f"long conversations: seeding {LONG} and {SHORT} messages, starting a worker")
        app = start_app("app-long", f"sqlite:///{workdir}/long.sqlite3", simulator.base_url, workdir, 0)
        output = procs.manage(
            dict(app.env, BENCH_LONG=str(LONG), BENCH_SHORT=str(SHORT)), "shell", "-c", _SEED
        )
        found = dict(line.split()[1:] for line in output.splitlines() if line.startswith("CONV "))
        long, short = Side(LONG, found[str(LONG)]), Side(SHORT, found[str(SHORT)])
        log(f"long conversations: GET /c/<uuid>/, {repeats} times each")
        await asyncio.to_thread(_server_times, app, (long, short), repeats)
        if (why := browser.unavailable()) is None:
            log(f"long conversations: Chromium opens each page {repeats} times")
            await _open_in_chromium(app, (long, short), repeats)
        else:
            report.notes.append(f"Long conversations, Chromium figures skipped: {why}")
        log(f"long conversations: {repeats} sends in each")
        for side in (long, short):
            await _sends(app, simulator, side, repeats)
    finally:
        if app is not None:
            app.server.stop()
        simulator.stop()
    _rows(report, long, short, repeats)


def _server_times(app: App, sides: tuple[Side, ...], repeats: int) -> None:
    cookies = {"sessionid": app.session}
    with httpx.Client(base_url=app.url, cookies=cookies, timeout=60) as http:
        for side in sides:
            for _ in range(2):  # warm-up: the first page also asks the upstream for its model list
                http.get(f"/c/{side.conversation}/").raise_for_status()
        for _ in range(repeats):
            for side in sides:  # interleaved, so a slow moment of the machine hits both
                started = perf_counter()
                answer = http.get(f"/c/{side.conversation}/")
                side.server.append(perf_counter() - started)
                answer.raise_for_status()
                side.page_bytes = len(answer.content)


async def _open_in_chromium(app: App, sides: tuple[Side, ...], repeats: int) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=shutil.which("chromium"), args=browser.CHROMIUM_FLAGS, headless=True
            )
            try:
                page = await context.new_page()
                page.set_default_timeout(60_000)
                await browser._sign_in(page, app.url)
                for side in sides:  # warm-up: static files cached, as for a returning reader
                    await page.goto(f"{app.url}/c/{side.conversation}/", wait_until="load")
                for _ in range(repeats):
                    for side in sides:
                        await page.goto(f"{app.url}/c/{side.conversation}/", wait_until="load")
                        await page.wait_for_function(_OPENED)
                        dom_ready, loaded, painted, articles = await page.evaluate(_OPEN_TIMINGS)
                        side.dom_ready.append(dom_ready / 1000)
                        side.loaded.append(loaded / 1000)
                        side.painted.append(painted / 1000)
                        side.articles = articles
            finally:
                await context.close()


async def _sends(app: App, simulator: SimulatorThread, side: Side, repeats: int) -> None:
    """Send on the conversation's socket; time to the upstream's receipt and to the first text."""
    model = demo_model(REPLY_TOKENS, 0)
    sock = await app.connect(side.conversation)
    try:
        await sock.wait_quiet(0.5, 30)  # the snapshot of the branch
        for n in range(repeats + 1):  # the first is a warm-up
            text = f"Send probe {n}: one more question"
            before = simulator.stats.chat_requests
            reply = sock.start(message(text, model), expected(text, REPLY_TOKENS))
            arrived = await _arrival(simulator, before, reply.sent + 30)
            try:
                await asyncio.wait_for(asyncio.shield(reply.done), 30)
            except TimeoutError:
                side.problems.append("no ending within 30 s")
                return
            if reply.status != "complete" or arrived is None:
                side.problems.append(f"reply ended {reply.status!r} {reply.notice}".strip())
                continue
            if n == 0:
                continue
            side.to_upstream.append(arrived - reply.sent)
            if reply.first is not None:
                side.first_text.append(reply.first - reply.sent)
            side.sent_messages = len((simulator.stats.last_chat_body or {}).get("messages", []))
    finally:
        sock.close()


async def _arrival(simulator: SimulatorThread, before: int, deadline: float) -> float | None:
    """When the simulator received the next chat request (its own clock reading), or None."""
    while simulator.stats.chat_requests == before:
        if perf_counter() > deadline:
            return None
        await asyncio.sleep(0.001)  # polling when to read it: the time itself is the simulator's
    return simulator.stats.last_chat_at


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _rows(report: Report, long: Side, short: Side, repeats: int) -> None:
    figures: list[tuple[str, list[float], list[float]]] = [
        ("server answers GET /c/<uuid>/", long.server, short.server),
        ("Chromium open: DOMContentLoaded", long.dom_ready, short.dom_ready),
        ("Chromium open: first contentful paint", long.painted, short.painted),
        ("Chromium open: load", long.loaded, short.loaded),
        ("Send -> the request reaches the upstream", long.to_upstream, short.to_upstream),
        ("Send -> first text of the reply", long.first_text, short.first_text),
    ]
    for label, slow, fast in figures:
        if not slow and not fast:
            continue
        a, b = _median(slow), _median(fast)
        target = "within 50 ms of a short chat"
        result = "PASS" if a - b <= 0.050 else "MISS"
        report.row(
            f"{LONG:,} vs {SHORT} messages: {label} (median of {repeats})",
            f"{ms(a)} vs {ms(b)} (+{ms(a - b)})",
            target,
            result,
        )
    report.details.append(
        f"Long conversations: pages of {long.page_bytes / 1000:.0f} kB ({long.articles} messages shown) "
        f"and {short.page_bytes / 1000:.0f} kB ({short.articles} shown); a Send carried "
        f"{long.sent_messages} of the {LONG}+ messages upstream (a {CONTEXT_LENGTH:,}-token window "
        f"reported on /models) and {short.sent_messages} in the short one. "
        + _runs("server", long.server, short.server)
        + _runs("first contentful paint", long.painted, short.painted)
        + _runs("to the upstream", long.to_upstream, short.to_upstream)
    )
    for side in (long, short):
        if side.problems:
            report.notes.append(
                f"Long conversations, {side.messages} messages: {'; '.join(side.problems[:3])}"
            )
            report.keep = True


def _runs(label: str, slow: list[float], fast: list[float]) -> str:
    def each(values: list[float]) -> str:
        return ", ".join(f"{v * 1000:.1f}" for v in values)

    return f"Runs, {label} (ms): long {each(slow)}; short {each(fast)}. "
