"""A running app (one Daphne worker) as the bench sees it: a session, conversations, sockets.

Only the app's external interface is used: ``manage.py`` commands, the login page, the
conversation socket. Conversations are created in bulk through ``manage.py shell`` so that
thousands of them cost one process start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from time import perf_counter
from urllib.parse import urlsplit

import httpx

from bench import procs
from bench.wsclient import Reply, Socket, connect
from chat.simulator import markdown_tokens, reply_tokens

USERNAME = "bench"
PASSWORD = "bench-password-not-secret"

_CREATE_CONVERSATIONS = """
import os
from django.contrib.auth import get_user_model
from chat.models import Conversation
user = get_user_model().objects.get(username="bench")
rows = Conversation.objects.bulk_create(
    [Conversation(owner=user, title="bench", model="demo") for _ in range(int(os.environ["BENCH_COUNT"]))],
    batch_size=500,
)
print("\\n".join("CONV " + str(row.pk) for row in rows))
"""


Expected = tuple[str, tuple[int, ...]]


@lru_cache(maxsize=4096)
def expected(text: str, tokens: int, style: str = "prose") -> Expected:
    """The simulator's reply to a first message ``text``, and the text length after each token.

    With ``style="markdown"`` the reply is its Markdown passage, whatever the message.
    """
    if style == "markdown":
        pieces = markdown_tokens(tokens)
    else:
        pieces = reply_tokens([{"role": "user", "content": text}], tokens)
    ends: list[int] = []
    total = 0
    for token in pieces:
        total += len(token)
        ends.append(total)
    return "".join(pieces), tuple(ends)


def demo_model(tokens: int, tps: float, style: str = "prose") -> str:
    """The model id that makes the simulator answer ``tokens`` tokens at ``tps`` (in ``style``)."""
    model = f"demo?tokens={tokens}&tps={tps:g}"
    return model if style == "prose" else f"{model}&style={style}"


def message(text: str, model: str) -> str:
    return json.dumps({"text": text, "model": model, "client_id": str(uuid.uuid4())})


def problem(reply: Reply, *, stopped: bool = False) -> str | None:
    """Why ``reply`` is not the complete, exact reply it was expected to be; None when it is.

    The frames' text was matched against the expected text as it came (``Reply.delta``); here the
    page must have received all of it, and been told the text was complete. With ``stopped``, a
    reply stopped on request passes if what it received is a start of the reply.
    """
    if reply.status != "complete" and not (stopped and reply.status == "stopped"):
        why = f"ended {reply.status!r}"
        detail = "; ".join([reply.notice, *reply.problems] if reply.notice else reply.problems)
        return f"{why} ({detail})" if detail else why
    if reply.problems:
        return "; ".join(reply.problems[:2])
    if reply.status == "complete":
        if reply.position != len(reply.expected):
            return f"text incomplete (got {reply.position} chars, want {len(reply.expected)})"
        if not reply.tail_deleted:
            return "no frame said the text was complete"
    return None


@dataclass
class App:
    name: str
    server: procs.Server
    url: str
    env: dict[str, str]
    session: str = ""
    snapshot_frames: int = 1
    pool: list[str] = field(default_factory=list)

    @property
    def sqlite_path(self) -> Path | None:
        """The worker's SQLite database file (``sqlite:////abs/path``), None on PostgreSQL."""
        url = self.env.get("DATABASE_URL", "")
        return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None

    def stored_html(self, message_ids: list[str]) -> dict[str, str]:
        """Each reply's stored HTML (``content_html``), read from the SQLite file, read-only."""
        path = self.sqlite_path
        if path is None:
            raise RuntimeError("stored_html reads the SQLite worker's database only")
        marks = ",".join("?" * len(message_ids))
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20)) as db:
            rows = db.execute(
                f"SELECT id, content_html FROM chat_message WHERE id IN ({marks})",
                [int(i) for i in message_ids],
            ).fetchall()
        return {str(ident): html for ident, html in rows}

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def add_conversations(self, count: int) -> None:
        out = procs.manage(dict(self.env, BENCH_COUNT=str(count)), "shell", "-c", _CREATE_CONVERSATIONS)
        self.pool.extend(line[5:] for line in out.splitlines() if line.startswith("CONV "))

    def take(self, count: int) -> list[str]:
        if len(self.pool) < count:
            self.add_conversations(count - len(self.pool) + 50)
        taken, self.pool[:] = self.pool[:count], self.pool[count:]
        return taken

    def login(self) -> None:
        with httpx.Client(base_url=self.url, follow_redirects=False, timeout=30) as http:
            page = http.get("/accounts/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            if page.status_code != 200 or token is None:
                raise RuntimeError(f"login page: HTTP {page.status_code}, no CSRF token")
            answer = http.post(
                "/accounts/login/",
                data={"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
            )
            session = http.cookies.get("sessionid")
            if answer.status_code != 302 or not session:
                raise RuntimeError(f"login failed: HTTP {answer.status_code}")
            self.session = session

    async def connect(self, conversation: str) -> Socket:
        headers = {"Origin": self.url, "Cookie": f"sessionid={self.session}"}
        return await connect(self.host, self.port, f"/ws/c/{conversation}/?since=0", headers)

    async def open(self, conversation: str) -> Socket:
        """A socket on ``conversation`` that has received what the app sends a connecting page."""
        sock = await self.connect(conversation)
        if not await sock.wait_frames(self.snapshot_frames, 30):
            sock.close()
            raise RuntimeError(f"conversation {conversation}: no snapshot within 30 s")
        return sock

    async def open_many(self, conversations: list[str], parallel: int = 32) -> list[Socket]:
        limit = asyncio.Semaphore(parallel)

        async def one(conversation: str) -> Socket:
            async with limit:
                return await self.open(conversation)

        results = await asyncio.gather(*(one(c) for c in conversations), return_exceptions=True)
        sockets = [s for s in results if isinstance(s, Socket)]
        errors = [e for e in results if isinstance(e, BaseException)]
        if errors:
            for sock in sockets:
                sock.close()
            raise RuntimeError(f"{len(errors)} of {len(conversations)} sockets failed to open: {errors[0]!r}")
        return sockets

    async def learn_snapshot(self) -> int:
        """How many frames a page connecting to a fresh conversation gets (waits for quiet)."""
        sock = await self.connect(self.take(1)[0])
        count = await sock.wait_quiet(0.5, 10)
        sock.close()
        self.snapshot_frames = max(count, 0)
        return count


async def run_reply(sock: Socket, text: str, model: str, want: Expected, within: float) -> Reply:
    """Send ``text`` on ``sock`` and wait for the reply's ending (at most ``within`` seconds).

    ``want`` is the reply expected (``expected``).
    """
    reply = sock.start(message(text, model), want)
    try:
        await asyncio.wait_for(asyncio.shield(reply.done), within)
    except TimeoutError:
        reply.problems.append(f"no ending within {within:.0f} s")
        reply.finish("timeout", perf_counter())
    return reply


def start_app(name: str, database_url: str, api_base: str, logdir: Path, conversations: int) -> App:
    """Migrate, create the bench user and ``conversations`` conversations, start Daphne, log in."""
    env = procs.app_env(database_url, api_base)
    procs.manage(env, "migrate", "--noinput")
    procs.manage(
        dict(env, DJANGO_SUPERUSER_PASSWORD=PASSWORD),
        "createsuperuser",
        "--noinput",
        "--username",
        USERNAME,
        "--email",
        "b@example.com",
    )
    server, url = procs.start_daphne(name, env, logdir)
    app = App(name=name, server=server, url=url, env=env)
    try:
        if conversations:
            app.add_conversations(conversations)
        app.login()
    except Exception:
        server.stop()
        raise
    return app
