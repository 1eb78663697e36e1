"""The production profile for real: PostgreSQL, Redis, the simulator and two Daphne workers.

Each test session gets a fresh PostgreSQL database (migrated, with one account), dropped at the end.
Workers are started per test, in parallel, so a test may kill or stop them. When PostgreSQL or
Redis is not running the tests skip with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from chat.simulator import SimulatorConfig, SimulatorThread
from tests.processes import base_env, in_ci, manage
from tests.production.support import (
    Database,
    RedisServer,
    Site,
    Worker,
    free_port,
    log_in,
    redis_server_binary,
    start_workers,
)

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_USERS = ("postgres", "root")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# A database number of its own, so nothing here meets what else uses the machine's Redis.
REDIS_DB = 7
USERNAME, PASSWORD = "prod-alice", "prod-alice-password-1"

# Every worker's settings unless a test overrides them: short leases and checkpoints so that
# endings after a crash come within seconds.
WORKER_SETTINGS = {
    "CHAT_MODEL": "demo",
    "CHAT_LEASE_SECONDS": "2",
    "CHAT_CHECKPOINT_SECONDS": "0.2",
    "CHAT_SHUTDOWN_GRACE_SECONDS": "5",
    "CHAT_READ_TIMEOUT": "30",
    "DJANGO_SECRET_KEY": "production-profile-tests-" + secrets.token_hex(16),
    # Every worker signs in from 127.0.0.1 and Redis keeps counts for 15 minutes, across runs:
    # the fuzzers' failures must not lock the account out of later tests (the throttling tests set
    # their own limits).
    "CHAT_LOGIN_FAILURES_PER_USERNAME": "0",
    "CHAT_LOGIN_FAILURES_PER_ADDRESS": "0",
}


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Postgres:
    url: str  # DATABASE_URL for the workers
    dsn: str  # for psycopg in this process
    db: Database


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A fresh database ``chat_prod_<hex>``, migrated, with one account; dropped at the end."""
    admin: psycopg.Connection | None = None
    user = ""
    errors = []
    for user in PG_USERS:
        try:
            admin = psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname="test", autocommit=True, connect_timeout=3
            )
            break
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {' '.join(str(exc).split())}")
    if admin is None:
        unavailable(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} ({'; '.join(errors)})")
        return
    name = f"chat_prod_{secrets.token_hex(6)}"
    url = f"postgres://{user}@{PG_HOST}:{PG_PORT}/{name}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            env = base_env(DATABASE_URL=url, DJANGO_SUPERUSER_PASSWORD=PASSWORD)
            try:
                manage(env, "migrate", "--noinput")
                manage(
                    env, "createsuperuser", "--noinput", "--username", USERNAME, "--email", "a@example.com"
                )
            except subprocess.CalledProcessError as exc:
                pytest.fail(f"{' '.join(exc.cmd[1:])} failed:\n{exc.stdout}\n{exc.stderr}")
            dsn = f"host={PG_HOST} port={PG_PORT} user={user} dbname={name}"
            yield Postgres(url=url, dsn=dsn, db=Database(dsn))
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT} ({exc})")
    finally:
        client.close()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A ``redis-server`` of this test's own, which it may stop and restart."""
    binary = redis_server_binary()
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorThread]:
    """The upstream: the project's simulator on loopback, in this process so tests can read its stats."""
    with SimulatorThread(config=SimulatorConfig(tokens_per_second=50, reply_tokens=40)) as simulator:
        yield simulator


@dataclass
class Account:
    username: str
    password: str
    cookies: dict[str, str] = field(default_factory=dict)

    def cookies_via(self, worker: Worker) -> dict[str, str]:
        """Sign in once (through the first worker that asks); the session works on every worker."""
        if not self.cookies:
            self.cookies = log_in(worker, self.username, self.password)
        return self.cookies


@pytest.fixture(scope="session")
def account(postgres) -> Account:
    return Account(USERNAME, PASSWORD)


Spawn = Callable[..., Site]


@pytest.fixture
def spawn(request, redis_url, postgres, sim, account) -> Iterator[Spawn]:
    """Start workers A and B (or as many as named) with the common settings plus ``overrides``.

    ``spawn(redis_url=..., A={...}, B={...}, **common)``: per-worker settings under the worker's
    name. Every worker started is stopped after the test, and its output is attached to a failure.
    """
    started: list[Worker] = []
    request.node.production_workers = started

    def start(*names: str, redis_url: str = redis_url, sign_in: bool = True, **overrides: Any) -> Site:
        names = names or ("A", "B")
        common = {key: str(value) for key, value in overrides.items() if key not in names}
        specs = []
        for name in names:
            own = {key: str(value) for key, value in overrides.get(name, {}).items()}
            env = base_env(
                **{
                    "DATABASE_URL": postgres.url,
                    "REDIS_URL": redis_url,
                    "CHAT_API_BASE": sim.base_url,
                    **WORKER_SETTINGS,
                    **common,
                    **own,
                }
            )
            specs.append((name, env))
        workers = start_workers(specs)
        started.extend(workers)
        cookies = account.cookies_via(workers[0]) if sign_in else {}  # over HTTPS only: the test signs in
        return Site(workers=workers, cookies=cookies, db=postgres.db)

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture
def site(spawn) -> Site:
    """Workers A and B with the common settings, sharing the session's database and Redis."""
    return spawn()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    workers = getattr(item, "production_workers", None)
    if report.when == "call" and report.failed and workers:
        for worker in workers:
            report.sections.append(
                (f"worker {worker.name} (pid {worker.pid}) output", worker.output()[-20000:])
            )
    return report


FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    """Lines to print at the end of the run (figures a test measured)."""
    return FIGURES


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("production-profile figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
