"""Redis behind Sentinel: a failover in the middle of a reply loses none of it.

Each test starts its own Redis master, a replica of it and a sentinel watching them, on free
loopback ports in a temporary directory, then fails the master over (as an operator does before
maintenance) or kills it (as a crash does). The workers are told only where the sentinels are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from chat import redis_client
from tests.dom import rendered
from tests.processes import base_env
from tests.production.conftest import WORKER_SETTINGS, unavailable
from tests.production.support import (
    Page,
    Site,
    follow_to_end,
    free_port,
    full_reply,
    redis_server_binary,
    start_conversation,
    start_workers,
    stop_process,
)

pytestmark = [pytest.mark.production, pytest.mark.live]

MASTER = "mymaster"
Address = tuple[str, int]


class RedisNode:
    """One ``redis-server`` (a data server or a sentinel) of a test's own, its output in a log file."""

    def __init__(self, binary: str, directory: Path, name: str, args: list[str]) -> None:
        self.port = free_port()
        self.name = name
        self.log = directory / f"{name}.log"
        self.args = [binary, *args]
        self.process: subprocess.Popen[bytes] | None = None
        self.directory = directory

    def start(self, *extra: str, timeout: float = 10) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.args, *extra, "--port", str(self.port), "--bind", "127.0.0.1"],
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client(socket_connect_timeout=0.5) as client:
                    client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} did not start on port {self.port}:\n{self.output()}"
                    ) from None
                time.sleep(0.05)

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kwargs)

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, as when its machine dies."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    master: RedisNode
    replica: RedisNode
    sentinel: RedisNode
    dead_sentinel_port: int

    @property
    def url(self) -> str:
        """``REDIS_URL``: its host and port name the first master; only its database number counts."""
        return f"redis://127.0.0.1:{self.master.port}/0"

    @property
    def sentinels(self) -> list[Address]:
        # A sentinel that is down comes first: the workers must go on to the next one.
        return [("127.0.0.1", self.dead_sentinel_port), ("127.0.0.1", self.sentinel.port)]

    @property
    def sentinels_env(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)

    def master_address(self) -> Address:
        with self.sentinel.client() as client:
            host, port = client.sentinel_get_master_addr_by_name(MASTER)
        return str(host), int(port)

    def node_at(self, address: Address) -> RedisNode:
        return next(node for node in (self.master, self.replica) if node.port == address[1])

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: the replica is promoted though the master is still up."""
        with self.sentinel.client() as client:
            client.execute_command("SENTINEL FAILOVER", MASTER)

    def quicken(self) -> None:
        """Have the sentinel depose a master that is still up within a second rather than eight.

        After a failover the sentinel waits four publish periods before it turns the old master
        into a replica; until then that server accepts writes that will be lost.
        """
        debug(self.sentinel, "publish-period", 250)

    def wait_deposed(self, old: Address, within: float = 30) -> None:
        """Wait until the old master is either gone or the new master's replica."""
        node = self.node_at(old)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if node.process is None or node.process.poll() is not None:
                return
            with node.client() as client:
                if client.execute_command("ROLE")[0] == b"slave":
                    return
            time.sleep(0.1)
        raise AssertionError(
            f"the old master was not made a replica in {within} s:\n{self.sentinel.output()}"
        )

    def wait_new_master(self, old: Address, within: float = 30) -> Address:
        """The address the sentinel names once it has promoted another server, answering as master."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            address = self.master_address()
            if address != old:
                with self.node_at(address).client() as client:
                    if client.execute_command("ROLE")[0] == b"master":
                        return address
            time.sleep(0.1)
        raise AssertionError(f"no failover within {within} s; sentinel log:\n{self.sentinel.output()}")


def debug(sentinel: RedisNode, *setting: object) -> None:
    """Shorten one of the sentinel's periods (``SENTINEL DEBUG``, Redis 7); older ones keep theirs."""
    with sentinel.client() as client, contextlib.suppress(redis.ResponseError):
        client.execute_command("SENTINEL DEBUG", *setting)


def _replica_known(sentinel: RedisNode) -> bool:
    with sentinel.client() as client:
        replicas = client.sentinel_slaves(MASTER)
    return any(
        replica.get("master-link-status") == "ok"
        and not replica.get("is_sdown")
        and not replica.get("is_disconnected")
        for replica in replicas
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A master, its replica and a sentinel that has seen both: ready to fail over."""
    binary = redis_server_binary()
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    # No persistence, and a replica's first sync starts at once rather than after 5 s.
    data = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
    master = RedisNode(binary, tmp_path, "master", data)
    replica = RedisNode(binary, tmp_path, "replica", data)
    config = tmp_path / "sentinel.conf"
    sentinel = RedisNode(binary, tmp_path, "sentinel", [str(config), "--sentinel"])
    nodes = [master, replica, sentinel]
    try:
        master.start()
        replica.start("--replicaof", "127.0.0.1", str(master.port))
        # The sentinel rewrites its own file, so it lives in the test's directory.
        config.write_text(
            f"dir {tmp_path}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        sentinel.start()
        debug(sentinel, "info-period", 250)  # it sees the replica, and its promotion, sooner
        deadline = time.monotonic() + 20
        while not _replica_known(sentinel):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sentinel never saw the replica in sync:\n{sentinel.output()}")
            time.sleep(0.1)
        yield Cluster(master=master, replica=replica, sentinel=sentinel, dead_sentinel_port=free_port())
    finally:
        for node in reversed(nodes):
            node.stop()


@pytest.fixture
def sentinel_site(request, cluster, postgres, sim, account) -> Iterator[Site]:
    """Workers A and B that know the Redis only through the sentinels."""
    specs = []
    for name in ("A", "B"):
        env = base_env(
            DATABASE_URL=postgres.url,
            REDIS_URL=cluster.url,
            REDIS_SENTINELS=cluster.sentinels_env,
            REDIS_SENTINEL_MASTER=MASTER,
            CHAT_API_BASE=sim.base_url,
            **WORKER_SETTINGS,
        )
        specs.append((name, env))
    workers = start_workers(specs)
    request.node.production_workers = workers  # their output is attached to a failure
    try:
        yield Site(workers=workers, cookies=account.cookies_via(workers[0]), db=postgres.db)
    finally:
        for worker in workers:
            worker.stop()


async def reply_across_a_failover(site: Site, cluster: Cluster, fail_over) -> None:
    """A reply written by A and watched on B, with ``fail_over`` run while it streams."""
    a, b, db = site.a, site.b, site.db
    text = "Keep going while Redis fails over"
    tokens = 320  # 8 s at 40 tokens a second: the failover lands in the middle
    conversation = await start_conversation(a, site.cookies, text, f"demo?tokens={tokens}&tps=40")
    (reply,) = await db.replies(conversation)
    reply_id = reply["id"]
    page = await Page.open(b, conversation, site.cookies)
    await page.wait(lambda: page.deltas.get(reply_id, 0) >= 3, within=10, what="deltas relayed to B")

    await asyncio.to_thread(cluster.quicken)
    old = await asyncio.to_thread(cluster.master_address)
    await asyncio.to_thread(fail_over)
    new = await asyncio.to_thread(cluster.wait_new_master, old)
    await asyncio.to_thread(cluster.wait_deposed, old)
    row = await db.reply(reply_id)
    assert row["status"] == "streaming", (
        f"the reply ended before the failover ({row['status']}: {row['error']})"
    )

    page, _ = await follow_to_end(b, conversation, site.cookies, reply_id, within=30, page=page)
    assert page.statuses[reply_id] == "complete"
    assert page.texts[reply_id] == rendered(full_reply(text, tokens))
    row = await db.wait_reply(reply_id, lambda r: r["status"] != "streaming", within=5, what="the ending")
    assert (row["status"], row["content"]) == ("complete", full_reply(text, tokens))

    # The next reply travels from A to B through the new master.
    second = "And one more after it"
    known = set(page.roles)
    await page.send(second, "demo?tokens=30&tps=60")
    await page.wait(lambda: page.new_replies(known), within=10, what="the second reply on B")
    (second_id,) = page.new_replies(known)
    page, _ = await follow_to_end(b, conversation, site.cookies, second_id, within=20, page=page)
    assert page.statuses[second_id] == "complete"
    assert page.texts[second_id] == rendered(full_reply(second, 30))
    with cluster.node_at(new).client() as client:
        assert client.keys("asgi*"), "the workers left nothing on the new master"
    await page.close()


async def test_a_reply_survives_a_sentinel_failover(sentinel_site, cluster):
    await reply_across_a_failover(sentinel_site, cluster, cluster.failover)


async def test_a_reply_survives_its_redis_master_dying(sentinel_site, cluster):
    await reply_across_a_failover(sentinel_site, cluster, cluster.master.kill)


async def test_the_app_redis_client_writes_to_the_new_master_after_a_failover(cluster, settings):
    settings.REDIS_URL = cluster.url
    settings.REDIS_SENTINELS = cluster.sentinels
    settings.REDIS_SENTINEL_MASTER = MASTER
    client = redis_client.client()
    await client.set("chat:test:before", "1")  # a pooled connection to the first master
    blocking = redis_client.sync_client()
    blocking.set("chat:test:before-sync", "1")

    old = cluster.master_address()
    cluster.failover()
    new = cluster.wait_new_master(old)
    # The pools ask the sentinels again at most once per MASTER_CHECK_SECONDS; the old master is
    # still up and a master (nothing deposes it in this test), so earlier writes could still go there.
    await asyncio.sleep(redis_client.MASTER_CHECK_SECONDS)

    await redis_client.client().set("chat:test:after", "1")
    redis_client.sync_client().set("chat:test:after-sync", "1")
    with cluster.node_at(new).client() as on_new:
        assert on_new.get("chat:test:after") == b"1"
        assert on_new.get("chat:test:after-sync") == b"1"
    assert (await redis_client.client().execute_command("ROLE"))[0] == b"master"
    await client.aclose()
    blocking.close()
