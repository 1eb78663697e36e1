"""Two workers through psycopg's connection pool, or through PgBouncer in transaction mode.

Each test runs a burst of conversations across both workers, one page following a reply from the
other worker, and a search, while it watches how many server connections the database holds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.production.conftest import unavailable
from tests.production.support import Page, free_port, full_reply, start_conversation, stop_process

pytestmark = [pytest.mark.production, pytest.mark.live]

BURST = 8  # conversations at once, half on each worker
TOKENS = 40


class PgBouncer:
    """A ``pgbouncer`` of the test's own in transaction mode, in front of the test's database."""

    def __init__(self, binary: str, database_url: str, *, pool_size: int) -> None:
        parts = urlsplit(database_url)
        self.name = parts.path.lstrip("/")
        self.user = parts.username or "postgres"
        self.port = free_port()
        # Readable by the unprivileged user pgbouncer runs as when the tests run as root.
        self.directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.directory.chmod(0o777)
        self.log = self.directory / "pgbouncer.log"
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{self.name} = host=127.0.0.1 port={parts.port or 5432} dbname={self.name} user={self.user}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 500\n"
            f"logfile = {self.log}\n"
        )
        config.chmod(0o644)
        command = [binary, str(config)]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            command = ["runuser", "-u", self.user if self.user != "root" else "postgres", "--", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait_listening()

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{self.name}"

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"pgbouncer did not start on port {self.port}:\n{log}")

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def pgbouncer(postgres) -> Iterator[PgBouncer]:
    binary = shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if binary is None:
        unavailable("pgbouncer is not installed (apt-get install pgbouncer; `make test` does it as root)")
    bouncer = PgBouncer(binary, postgres.url, pool_size=3)
    try:
        yield bouncer
    finally:
        bouncer.stop()


class ConnectionWatch:
    """The most server connections the site's database held from its workers while it ran."""

    def __init__(self, db, name: str) -> None:
        self.db, self.name, self.peak = db, name, 0
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> ConnectionWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            (row,) = await self.db.rows(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                self.name,
            )
            self.peak = max(self.peak, row["n"])
            await asyncio.sleep(0.05)


async def burst_across_both_workers(site) -> None:
    """``BURST`` conversations at once on A and B; a page on B follows one of A's to its end; a search."""
    a, b, db = site.a, site.b, site.db
    texts = [f"pooled question number {n}" for n in range(BURST)]
    conversations = await asyncio.gather(
        *(
            start_conversation((a, b)[n % 2], site.cookies, text, f"demo?tokens={TOKENS}&tps=40")
            for n, text in enumerate(texts)
        )
    )
    (followed,) = await db.replies(conversations[0])  # started on A
    page = await Page.open(b, conversations[0], site.cookies)
    await page.wait(lambda: followed["id"] in page.endings, within=30, what="the ending on B")
    assert page.endings[followed["id"]] == "complete"
    for conversation, text in zip(conversations, texts, strict=True):
        (reply,) = await db.replies(conversation)
        row = await db.wait_reply(
            reply["id"], lambda r: r["status"] != "streaming", within=30, what="an ending"
        )
        assert (row["status"], row["content"]) == ("complete", full_reply(text, TOKENS))
    await page.close()
    async with httpx.AsyncClient(base_url=b.url, cookies=site.cookies, timeout=10) as client:
        found = await client.get("/search/", params={"q": "pooled question number"})
    assert found.status_code == 200
    assert found.text.count('href="/c/') >= BURST


async def test_workers_on_psycopgs_pool_hold_no_more_connections_than_it_allows(spawn, postgres):
    site = spawn(DATABASE_POOL="true", DATABASE_POOL_MIN_SIZE="1", DATABASE_POOL_MAX_SIZE="3")
    name = urlsplit(postgres.url).path.lstrip("/")
    async with ConnectionWatch(site.db, name) as watch:
        await burst_across_both_workers(site)
    # Each worker's pool has at most 3; the watch's own connection and the test's checks come and go.
    assert 0 < watch.peak <= 2 * 3 + 2, f"{watch.peak} connections at once"


async def test_workers_through_pgbouncer_in_transaction_mode(spawn, pgbouncer, postgres):
    site = spawn(DATABASE_URL=pgbouncer.url, DATABASE_PGBOUNCER="true")
    name = urlsplit(postgres.url).path.lstrip("/")
    async with ConnectionWatch(site.db, name) as watch:
        await burst_across_both_workers(site)
    # PgBouncer's pool of 3 serves both workers; the test's own connections come and go beside it.
    assert 0 < watch.peak <= 3 + 2, f"{watch.peak} connections at once"
    for worker in site.workers:
        assert "prepared statement" not in worker.output()
