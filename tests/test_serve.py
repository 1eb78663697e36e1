"""``python -m chatsite.serve``: workers start on the event loop the settings name, and say which."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from pathlib import Path

import pytest
import uvloop

from chatsite import serve
from tests.processes import PYTHON, ROOT, WORKER, ServerProcess, base_env

ARGS = ["-b", "127.0.0.1", "-p", "0", "chatsite.asgi:application"]


def start(command: list[str], tmp_path: Path, **env: str) -> tuple[ServerProcess, str, str]:
    """A worker; its loop as it logged it, and its ``http://host:port``."""
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3", **env)
    server = ServerProcess([*command, *ARGS], env)
    try:
        loop = server.wait_for(r"Event loop: (\w+)").group(1)
        address = server.wait_for(r"Listening on TCP address ([\d.]+):(\d+)")
    except Exception:
        server.stop()
        raise
    return server, loop, f"http://{address.group(1)}:{address.group(2)}"


def test_a_worker_runs_on_uvloop_unless_told_otherwise_and_serves(tmp_path):
    server, loop, url = start(WORKER, tmp_path)
    try:
        assert loop == "uvloop"
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        server.stop()
    assert not any("WARNING" in line for line in server.output), server.output


def test_the_asyncio_setting_keeps_pythons_own_loop(tmp_path):
    server, loop, _ = start(WORKER, tmp_path, CHAT_EVENT_LOOP="asyncio")
    server.stop()
    assert loop == "asyncio"


def test_daphne_started_directly_warns_that_the_setting_is_not_in_force(tmp_path):
    server, loop, _ = start([str(Path(PYTHON).with_name("daphne"))], tmp_path)
    server.stop()
    assert loop == "asyncio"
    assert any("WARNING" in line and "python -m chatsite.serve" in line for line in server.output)


def test_an_unknown_loop_is_refused_before_anything_starts():
    done = subprocess.run(
        [*WORKER, *ARGS],
        cwd=ROOT,
        env=base_env(CHAT_EVENT_LOOP="trio"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "CHAT_EVENT_LOOP must be uvloop or asyncio, not 'trio'" in done.stderr
    assert "Listening" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("make", "name"), [(uvloop.new_event_loop, "uvloop"), (asyncio.new_event_loop, "asyncio")]
)
def test_loop_names(make, name):
    loop = make()
    try:
        assert serve.loop_name(loop) == name
    finally:
        loop.close()
