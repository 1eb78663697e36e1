"""Daphne's sockets write through (``chat.twisted_writes``), on a real Twisted reactor over loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_checks(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.twisted_sockets", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def through(request) -> dict[str, object]:
    """The checks on each loop a worker may run on (``CHAT_EVENT_LOOP``)."""
    checks = run_checks(*(["--uvloop"] if request.param == "uvloop" else []))
    assert checks["loop"] == request.param
    return checks


def test_a_write_reaches_the_peer_before_the_reactor_turns(through):
    assert through["installed"] is True
    assert through["at_once"] == "hello"
    # Twisted's own write waits for the reactor's next turn: the same check sees nothing.
    assert run_checks("--without", *(["--uvloop"] if through["loop"] == "uvloop" else []))["at_once"] == ""


def test_more_than_the_socket_takes_arrives_whole_and_in_order(through):
    assert through["in_order"] is True


def test_a_pull_producer_is_still_asked_for_more(through):
    assert through["pulled"] == 20_000


def test_a_write_to_a_reset_connection_closes_it(through):
    assert through["lost"] == "ConnectionLost"
