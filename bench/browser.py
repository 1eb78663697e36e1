"""Figures in a real browser: Debian's Chromium, driven by Playwright, on the bench's worker.

What a person sees is the page, not the socket: how soon the first words show after Send on a new
chat (which posts a form and loads the conversation's page before any text can arrive), how busy a
streaming Markdown reply keeps the page's main thread, and the longest task it blocks that thread
for. Chromium is the system's (``shutil.which("chromium")``), never a downloaded one, with a fresh
profile each run; without it the figures are skipped with the reason.

Times are taken inside the page, so they include no Playwright round trip: an init script records
the Send click (``performance.timeOrigin + performance.now()``, kept in ``sessionStorage`` across
the navigation), a ``MutationObserver`` on the next page records when the assistant's message body
first has text, and a ``PerformanceObserver`` collects long tasks. Main-thread time comes from the
DevTools protocol (``Performance.getMetrics``: TaskDuration, ScriptDuration, LayoutDuration).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Any

from bench.app import PASSWORD, USERNAME, App, demo_model
from bench.report import Report, log, verdict
from bench.stats import ms

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Runs in every document before its own scripts.
INIT_SCRIPT = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  document.addEventListener("click", (event) => {
    if (event.target instanceof Element && event.target.closest("#send-button")) {
      sessionStorage.setItem("benchSendAt", String(now()));
      window.__benchSendAt = performance.now();
    }
  }, true);
  window.__benchLongTasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) window.__benchLongTasks.push([entry.startTime, entry.duration]);
    }).observe({type: "longtask", buffered: true});
  } catch (error) {}
  window.__benchFirstText = null;
  const firstText = new MutationObserver(() => {
    const body = document.querySelector('[data-role="assistant"] .message-body');
    if (body && body.textContent.trim()) {
      window.__benchFirstText = now();
      firstText.disconnect();
    }
  });
  firstText.observe(document, {childList: true, subtree: true, characterData: true});
})();
"""

# Before a Send on a conversation page: note when the next assistant reply ends (its data-status
# leaves "streaming", which chat.js sets from the ending frame).
WATCH_ENDING = """() => {
  window.__benchEndAt = null;
  const list = document.getElementById("messages");
  const earlier = new Set(list.querySelectorAll('[data-role="assistant"]'));
  const ending = new MutationObserver((records) => {
    for (const record of records) {
      const article = record.target;
      if (!earlier.has(article) && article.dataset.role === "assistant"
          && article.dataset.status !== "streaming") {
        window.__benchEndAt = performance.now();
        ending.disconnect();
        return;
      }
    }
  });
  ending.observe(list, {attributes: true, attributeFilter: ["data-status"], subtree: true});
}"""

REPLY_DONE = """() => { const r = [...document.querySelectorAll('[data-role="assistant"]')].pop();
                       return !!r && r.dataset.status !== "streaming"; }"""

CHOOSE_MODEL = """m => { const s = document.querySelector("#model-select");
                         if (![...s.options].some(o => o.value === m)) s.add(new Option(m, m));
                         s.value = m; }"""

FIRST_TEXT_MODEL = "demo?tokens=20&tps=200"
FIRST_TEXT_SAMPLES = 7  # new chats timed (cheap: each is a 20-token reply)
METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskOtherDuration")


@dataclass
class Run:
    """One streamed reply on an open conversation page."""

    wall: float  # Send click to the reply's ending, in the page, seconds
    busy: dict[str, float]  # main-thread seconds by kind (``METRICS``) over the reply
    longest_task: float  # seconds, 0 when no task took over 50 ms
    long_tasks: int

    def share(self, metric: str) -> float:
        return self.busy[metric] / self.wall if self.wall > 0 else float("nan")


@dataclass
class Figures:
    first_text: list[float] = field(default_factory=list)  # seconds, Send -> first text, new chat
    busy: list[Run] = field(default_factory=list)
    long: list[Run] = field(default_factory=list)


def unavailable() -> str | None:
    """Why the browser figures cannot run here, or None."""
    if shutil.which("chromium") is None:
        return "chromium is not installed (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


async def measure(app: App, args: argparse.Namespace) -> Figures:
    from playwright.async_api import async_playwright

    figures = Figures()
    busy_model = demo_model(args.browser_busy_tokens, args.browser_busy_tps, "markdown")
    long_model = demo_model(args.browser_long_tokens, args.browser_long_tps, "markdown")
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS, headless=True
            )
            try:
                await context.add_init_script(INIT_SCRIPT)
                page = await context.new_page()
                page.set_default_timeout(30_000)
                cdp = await context.new_cdp_session(page)
                await _sign_in(page, app.url)
                await _new_chat(page, app.url, "Warm-up: hello")  # first page loads fill caches
                log(f"browser: {FIRST_TEXT_SAMPLES} new chats")
                for i in range(FIRST_TEXT_SAMPLES):
                    figures.first_text.append(await _new_chat(page, app.url, f"Browser probe {i}: hello"))
                # Each watched reply is the second of a fresh conversation: the same page every time.
                for i in range(args.browser_repeats):
                    log(f"browser {i + 1}/{args.browser_repeats}: {busy_model}")
                    await _new_chat(page, app.url, f"Browser run {i}: hello")
                    busy_within = args.browser_busy_tokens / args.browser_busy_tps + 60
                    figures.busy.append(await _reply(page, cdp, busy_model, busy_within))
                    log(f"browser {i + 1}/{args.browser_repeats}: {long_model}")
                    await _new_chat(page, app.url, f"Browser run {i}: again")
                    long_within = args.browser_long_tokens / args.browser_long_tps + 60
                    figures.long.append(await _reply(page, cdp, long_model, long_within))
            finally:
                await context.close()
    return figures


async def _sign_in(page: Any, url: str) -> None:
    await page.goto(f"{url}/accounts/login/")
    await page.get_by_label("Username").fill(USERNAME)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_label("Message").wait_for()


async def _new_chat(page: Any, url: str, text: str) -> float:
    """Send ``text`` from the new-chat page; seconds from the click to the reply's first text."""
    await page.goto(f"{url}/")
    await page.evaluate(CHOOSE_MODEL, FIRST_TEXT_MODEL)
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_url(re.compile(r"/c/[0-9a-f-]+/$"))
    await page.wait_for_function("() => window.__benchFirstText !== null")
    waited = await page.evaluate(
        "() => window.__benchFirstText - Number(sessionStorage.getItem('benchSendAt'))"
    )
    await page.wait_for_function(REPLY_DONE, polling=100)
    return waited / 1000


async def _reply(page: Any, cdp: Any, model: str, within: float) -> Run:
    """Send on the open conversation page and watch the main thread until the reply has ended."""
    await page.evaluate(CHOOSE_MODEL, model)
    await page.get_by_label("Message").fill("Show me some Markdown")
    await page.evaluate(WATCH_ENDING)
    await cdp.send("Performance.enable")
    before = await _metrics(cdp)
    await page.get_by_role("button", name="Send").click()
    # Polled every 250 ms, not every animation frame: the poll itself runs on the main thread.
    await page.wait_for_function("() => window.__benchEndAt !== null", polling=250, timeout=within * 1000)
    after = await _metrics(cdp)
    sent, ended, tasks = await page.evaluate(
        "() => [window.__benchSendAt, window.__benchEndAt, "
        "window.__benchLongTasks.filter(t => t[0] >= window.__benchSendAt).map(t => t[1])]"
    )
    return Run(
        wall=(ended - sent) / 1000,
        busy={name: after.get(name, 0.0) - before.get(name, 0.0) for name in METRICS},
        longest_task=max(tasks, default=0.0) / 1000,
        long_tasks=len(tasks),
    )


async def _metrics(cdp: Any) -> dict[str, float]:
    answer = await cdp.send("Performance.getMetrics")
    return {metric["name"]: metric["value"] for metric in answer["metrics"]}


def rows(report: Report, figures: Figures, args: argparse.Namespace) -> None:
    if figures.first_text:
        first = statistics.median(figures.first_text)
        report.row(
            f"Send -> first text on the page, new chat (Chromium, median of {len(figures.first_text)})",
            ms(first),
            "<= 30 ms",
            verdict(first <= 0.030),
        )
        report.details.append(
            "Browser, Send -> first text of the reply in the DOM on a new chat (sent over the new-chat "
            f"page's socket; the address changes with pushState), {FIRST_TEXT_MODEL}: "
            + ", ".join(ms(x, 0) for x in figures.first_text)
            + "."
        )
    label = f"{args.browser_busy_tokens}-token reply at {args.browser_busy_tps:g} tok/s, style=markdown"
    if figures.busy:
        task = statistics.median(run.share("TaskDuration") for run in figures.busy)
        script = statistics.median(run.share("ScriptDuration") for run in figures.busy)
        layout = statistics.median(run.share("LayoutDuration") for run in figures.busy)
        report.row(
            f"Main thread busy, {label} (task; script, layout)",
            f"{100 * task:.1f}% ({100 * script:.1f}% script, {100 * layout:.1f}% layout)",
            "<= 10%",
            verdict(task <= 0.10),
        )
        report.details.append(_runs_detail(f"Browser, {label}", figures.busy))
    label = f"{args.browser_long_tokens}-token reply at {args.browser_long_tps:g} tok/s, style=markdown"
    if figures.long:
        longest = statistics.median(run.longest_task for run in figures.long)
        report.row(
            f"Longest main-thread task, {label}", ms(longest, 0), "<= 50 ms", verdict(longest <= 0.050)
        )
        report.details.append(_runs_detail(f"Browser, {label}", figures.long))


def _runs_detail(label: str, runs: list[Run]) -> str:
    def pct(run: Run, metric: str) -> str:
        return f"{100 * run.share(metric):.1f}%"

    parts = [
        f"{run.wall:.1f} s, main thread {pct(run, 'TaskDuration')} (script {pct(run, 'ScriptDuration')}, "
        f"layout {pct(run, 'LayoutDuration')}, style {pct(run, 'RecalcStyleDuration')}, other "
        f"{pct(run, 'TaskOtherDuration')}), {run.long_tasks} tasks over 50 ms, longest "
        f"{ms(run.longest_task, 0)}"
        for run in runs
    ]
    return f"{label}, Send -> ending in the page: " + "; ".join(parts) + "."
