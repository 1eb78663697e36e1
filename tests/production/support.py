"""Helpers for the production-profile tests: worker processes, a private Redis, pages, rows.

A ``Page`` is what a browser tab holds: one socket to one worker, and what it has been shown of
each reply (the body text of the last drawing of the message plus every delta appended since).
Rows are read with plain SQL through psycopg, because the test process's own Django settings
point at an in-memory SQLite database.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import redis
from psycopg.rows import dict_row
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from chat.consumers import CLOSE_RESYNC
from chat.simulator import reply_text
from tests.dom import PAGE, Document
from tests.processes import WORKER, ServerProcess

TERMINAL = {"complete", "stopped", "error", "interrupted"}

_ARTICLE = re.compile(r'<article id="m-(\d+)"([^>]*)>')
_ATTR = re.compile(r'data-(role|status)="([^"]*)"')
_GROWS = re.compile(r"id=m-(\d+)-(?:r?tail|r?code) hx-swap-oob")
_ENDING = re.compile(r'<footer id="m-(\d+)-meta"[^>]*data-ending="(\w+)"')
_STATE = re.compile(r'<div id="chat-state"[^>]*data-version="(\d+)"')


def full_reply(text: str, tokens: int) -> str:
    """What the simulator streams in answer to ``text`` (only the last user message counts)."""
    return reply_text([{"role": "user", "content": text}], tokens)


# --- Waiting --------------------------------------------------------------------------------------


async def eventually[T](check: Callable[[], Awaitable[T]], *, within: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what} (last: {result!r})")
        await asyncio.sleep(0.05)


# --- Processes ------------------------------------------------------------------------------------


class Worker:
    """A Daphne worker of the site; unlike ``daphne_process`` it exposes the process (kill, SIGTERM)."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.server = ServerProcess([*WORKER, "-b", "127.0.0.1", "-p", "0", "chatsite.asgi:application"], env)
        self.url = ""
        self.port = 0

    def wait_ready(self, timeout: float = 30) -> None:
        match = self.server.wait_for(r"Listening on TCP address ([\d.]+):(\d+)", timeout)
        self.port = int(match.group(2))
        self.url = f"http://{match.group(1)}:{self.port}"

    @property
    def pid(self) -> int:
        return self.server.process.pid

    def ws_url(self, conversation: str, since: int | None = None) -> str:
        query = "" if since is None else f"?since={since}"
        return f"ws://127.0.0.1:{self.port}/ws/c/{conversation}/{query}"

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to save anything."""
        os.kill(self.pid, signal.SIGKILL)
        self.server.process.wait(10)

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if the process is still running after ``timeout`` s."""
        try:
            return self.server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        return "".join(self.server.output)

    def stop(self) -> None:
        self.server.stop()


def start_workers(specs: list[tuple[str, dict[str, str]]]) -> list[Worker]:
    """Start every worker at once (they boot in parallel), then wait until each listens."""
    workers = [Worker(name, env) for name, env in specs]
    try:
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A private ``redis-server`` (no persistence) that a test may stop and start again on one port."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, and SIGKILL if it is still there 10 s later."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def redis_server_binary() -> str | None:
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    return shutil.which("redis-server")


@dataclass
class Site:
    """The workers of a test, the signed-in user's cookies (valid on every worker) and the database."""

    workers: list[Worker]
    cookies: dict[str, str]
    db: Database

    @property
    def a(self) -> Worker:
        return self.workers[0]

    @property
    def b(self) -> Worker:
        return self.workers[1]


# --- HTTP -----------------------------------------------------------------------------------------


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def log_in(worker: Worker, username: str, password: str) -> dict[str, str]:
    """Sign in through the login form; return the cookies a browser would then hold."""
    with httpx.Client(base_url=worker.url, timeout=10) as client:
        form = client.get("/accounts/login/")
        assert form.status_code == 200, form.text[:500]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, "the login page has no CSRF token"
        answer = client.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
        )
        assert answer.status_code == 302, f"login failed ({answer.status_code}): {answer.text[:500]}"
        return {"sessionid": client.cookies["sessionid"], "csrftoken": client.cookies["csrftoken"]}


async def start_conversation(worker: Worker, cookies: dict[str, str], text: str, model: str) -> str:
    """POST the new-chat form (which starts the reply on ``worker``); return the conversation's id."""
    async with httpx.AsyncClient(base_url=worker.url, cookies=cookies, timeout=10) as client:
        answer = await client.post(
            "/c/new/",
            data={"text": text, "model": model},
            # As a browser sends them (over HTTPS, Django's CSRF check requires the Origin).
            headers={"X-CSRFToken": cookies["csrftoken"], "Origin": worker.url},
        )
    assert answer.status_code == 303, f"new chat answered {answer.status_code}: {answer.text[:500]}"
    match = re.fullmatch(r"/c/([0-9a-f-]{36})/", answer.headers["location"])
    assert match, answer.headers["location"]
    return match.group(1)


async def new_chat_status(worker: Worker, cookies: dict[str, str], model: str = "demo") -> int:
    """The status the new-chat form answers with (303 when a reply starts, 503 when refused)."""
    async with httpx.AsyncClient(base_url=worker.url, cookies=cookies, timeout=10) as client:
        answer = await client.post(
            "/c/new/",
            data={"text": "One more", "model": model},
            headers={"X-CSRFToken": cookies["csrftoken"]},
        )
    return answer.status_code


async def get_page(worker: Worker, cookies: dict[str, str], conversation: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=worker.url, cookies=cookies, timeout=10) as client:
        return await client.get(f"/c/{conversation}/")


@dataclass
class ShownReply:
    status: str
    text: str


def reply_in_page(markup: str, reply_id: int) -> ShownReply | None:
    """The status and body (canonical HTML) of a reply as an HTML page draws it."""
    page = Document(markup)
    article, body = page.element(f"m-{reply_id}"), page.element(f"m-{reply_id}-body")
    if article is None or body is None:
        return None
    return ShownReply(status=article.attrs.get("data-status", ""), text=body.inner_html())


# --- Pages ----------------------------------------------------------------------------------------


@dataclass
class Page:
    """One socket to one worker, and what the page shows of each message."""

    worker: Worker
    ws: ClientConnection
    doc: Document = field(default_factory=lambda: Document(PAGE))
    statuses: dict[int, str] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)
    deltas: dict[int, int] = field(default_factory=dict)  # delta frames received per reply
    endings: dict[int, str] = field(default_factory=dict)  # ending frames received per reply
    frames: list[str] = field(default_factory=list)
    synced: bool = False
    closed: bool = False
    close_code: int | None = None

    @classmethod
    async def open(
        cls,
        worker: Worker,
        conversation: str,
        cookies: dict[str, str],
        *,
        since: int | None = None,
        resync_ok: bool = False,
    ) -> Page:
        """Connect and read the snapshot (it ends with the conversation's state frame).

        ``resync_ok``: a close asking for a resync before the snapshot is complete is returned, not an error.
        """
        ws = await connect(
            worker.ws_url(conversation, since),
            additional_headers={"Cookie": cookie_header(cookies)},
            origin=Origin(worker.url),
            open_timeout=10,
            close_timeout=2,
            max_size=2**22,
            # Frames a test does not read yet must not pause the connection (or its close handshake).
            max_queue=None,
        )
        page = cls(worker=worker, ws=ws)
        await page.wait(
            lambda: page.synced or (resync_ok and page.close_code == CLOSE_RESYNC),
            within=10,
            what="the snapshot",
        )
        return page

    @property
    def texts(self) -> dict[int, str]:
        """Each message's body as the page shows it (canonical HTML: compare with ``rendered``)."""
        return {message_id: self.doc.html_of(f"m-{message_id}-body") for message_id in self.roles}

    def _apply(self, frame: str) -> None:
        self.frames.append(frame)
        self.doc.apply(frame)
        for match in _ARTICLE.finditer(frame):
            attrs = dict(_ATTR.findall(match.group(2)))
            message_id = int(match.group(1))
            self.roles[message_id] = attrs.get("role", "")
            if "status" in attrs:
                self.statuses[message_id] = attrs["status"]
        for message_id in {int(match.group(1)) for match in _GROWS.finditer(frame)}:
            self.deltas[message_id] = self.deltas.get(message_id, 0) + 1
        for match in _ENDING.finditer(frame):
            self.endings[int(match.group(1))] = match.group(2)
            self.statuses[int(match.group(1))] = match.group(2)
        if _STATE.search(frame):
            self.synced = True

    async def wait(self, condition: Callable[[], bool], *, within: float, what: str) -> None:
        """Read frames until ``condition()`` holds; fail if the socket closes first or time runs out."""
        deadline = time.monotonic() + within
        while not condition():
            if self.closed:
                where = f"the socket to {self.worker.name}"
                raise AssertionError(f"{where} closed ({self.close_code}) before {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {within} s on {self.worker.name} waiting for {what}")
            await self.receive(remaining)

    async def receive(self, within: float) -> None:
        """Apply the next frame, or note that the socket closed; return quietly after ``within`` s."""
        try:
            async with asyncio.timeout(within):
                frame = await self.ws.recv()
        except TimeoutError:
            return
        except ConnectionClosed as exc:
            self.closed = True
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None
            return
        self._apply(frame if isinstance(frame, str) else frame.decode())

    async def wait_closed(self, *, within: float, what: str = "the socket to close") -> int | None:
        deadline = time.monotonic() + within
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {within} s on {self.worker.name} waiting for {what}")
            await self.receive(remaining)
        return self.close_code

    async def wait_ending_or_close(self, reply_id: int, *, within: float) -> None:
        deadline = time.monotonic() + within
        while reply_id not in self.endings and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no ending for reply {reply_id} on {self.worker.name} in {within} s")
            await self.receive(remaining)

    def new_replies(self, known: set[int]) -> list[int]:
        return [m for m, role in self.roles.items() if role == "assistant" and m not in known]

    async def send(self, text: str, model: str) -> None:
        request = {"action": "send", "text": text, "model": model, "client_id": str(uuid.uuid4())}
        await self.ws.send(json.dumps(request))

    async def stop(self) -> None:
        await self.ws.send(json.dumps({"action": "stop"}))

    async def close(self) -> None:
        await self.ws.close()


async def follow_to_end(
    worker: Worker,
    conversation: str,
    cookies: dict[str, str],
    reply_id: int,
    *,
    within: float,
    page: Page | None = None,
) -> tuple[Page, int]:
    """Keep a page open on ``worker`` until the reply ends, reconnecting (as the page does) on a resync close.

    Starts with ``page`` when given (one already open), else opens one. Returns the last page and
    how many times it had to resync.
    """
    deadline = time.monotonic() + within
    resyncs = 0
    while True:
        if page is None or page.closed:
            page = await Page.open(worker, conversation, cookies, resync_ok=True)
        while page.statuses.get(reply_id) not in TERMINAL and not page.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"reply {reply_id} did not end on {worker.name} within {within} s")
            await page.receive(remaining)
        if not page.closed:
            return page, resyncs
        assert page.close_code == CLOSE_RESYNC, f"socket closed with {page.close_code}, not {CLOSE_RESYNC}"
        resyncs += 1


# --- Rows -----------------------------------------------------------------------------------------


class Database:
    """Plain SQL on the site's PostgreSQL database (one short connection per query)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def rows(self, query: str, *params: object) -> list[dict[str, Any]]:
        connect = psycopg.AsyncConnection.connect
        async with await connect(self.dsn, autocommit=True, row_factory=dict_row) as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()

    async def execute(self, statement: str, *params: object) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(statement, params)

    async def reply(self, reply_id: int) -> dict[str, Any]:
        (row,) = await self.rows("SELECT * FROM chat_message WHERE id = %s", reply_id)
        return row

    async def replies(self, conversation: str) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT * FROM chat_message WHERE conversation_id = %s::uuid AND role = 'assistant' ORDER BY id",
            conversation,
        )

    async def wait_reply(
        self, reply_id: int, condition: Callable[[dict[str, Any]], bool], *, within: float, what: str
    ) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            row = await self.reply(reply_id)
            return row if condition(row) else None

        return await eventually(check, within=within, what=what)

    async def writes(self) -> int:
        """Rows inserted, updated and deleted in the chat tables, as the statistics collector counts them."""
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            cursor = await conn.execute(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables "
                "WHERE relname LIKE 'chat\\_%'"
            )
            row = await cursor.fetchone()
            assert row is not None
            return int(row[0])

    async def settled_writes(self, *, quiet: float = 1.0, within: float = 20) -> int:
        """``writes()`` once it has not moved for ``quiet`` s (statistics reach the counters late)."""
        deadline = time.monotonic() + within
        value = await self.writes()
        since = time.monotonic()
        while time.monotonic() - since < quiet:
            if time.monotonic() > deadline:
                raise AssertionError(f"the write counters kept moving for {within} s")
            await asyncio.sleep(0.1)
            current = await self.writes()
            if current != value:
                value, since = current, time.monotonic()
        return value
