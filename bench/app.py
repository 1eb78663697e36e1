"""A running app (one Daphne worker) as the bench sees it: a session, conversations, sockets.

Only the app's external interface is used: ``manage.py`` commands, the login page, the
conversation socket. Conversations are created in bulk through ``manage.py shell`` so that
thousands of them cost one process start.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from time import perf_counter
from urllib.parse import urlsplit

import httpx

from bench import procs
from bench.wsclient import Reply, Socket, connect
from chat.simulator import reply_text, reply_tokens

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


@lru_cache(maxsize=4096)
def expected(text: str, tokens: int) -> tuple[str, tuple[int, ...]]:
    """The simulator's reply to a first message ``text``, and the text length after each token."""
    messages = [{"role": "user", "content": text}]
    ends: list[int] = []
    total = 0
    for token in reply_tokens(messages, tokens):
        total += len(token)
        ends.append(total)
    return reply_text(messages, tokens), tuple(ends)


def message(text: str, model: str) -> str:
    return json.dumps({"text": text, "model": model, "client_id": str(uuid.uuid4())})


def problem(reply: Reply, text: str, tokens: int, *, stopped: bool = False) -> str | None:
    """Why ``reply`` is not the complete, exact reply to ``text``; None when it is.

    With ``stopped``, a reply stopped on request passes if its text is a start of the reply.
    """
    if reply.status != "complete" and not (stopped and reply.status == "stopped"):
        why = f"ended {reply.status!r}"
        detail = "; ".join([reply.notice, *reply.problems] if reply.notice else reply.problems)
        return f"{why} ({detail})" if detail else why
    if reply.problems:
        return "; ".join(reply.problems)
    want, _ = expected(text, tokens)
    got = reply.text
    if reply.status == "stopped":
        want = want[: len(got)]
    if got != want:
        at = next(
            (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want))
        )
        return f"text differs at char {at} (got {len(got)} chars, want {len(want)})"
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


async def run_reply(sock: Socket, text: str, model: str, within: float) -> Reply:
    """Send ``text`` on ``sock`` and wait for the reply's ending (at most ``within`` seconds)."""
    reply = sock.start(message(text, model))
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
