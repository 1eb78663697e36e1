"""Real server processes for live tests: the simulator and Daphne, each on a port the OS picked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# A worker as the deploy files start one: Daphne, on the event loop the settings name.
WORKER = [PYTHON, "-m", "chatsite.serve"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


class ServerProcess:
    """A child process whose output is collected, so a failing test can show it."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.output: list[str] = []
        self._seen = threading.Condition()
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._seen:
                self.output.append(line)
                self._seen.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._seen:
            while True:
                for line in self.output[checked:]:
                    if match := regex.search(line):
                        return match
                checked = len(self.output)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise RuntimeError(f"{pattern!r} never appeared; output:\n{''.join(self.output)}")
                self._seen.wait(min(remaining, 0.5))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def base_env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CHAT_", "DJANGO_"))}
    env.pop("ARCEE_API_KEY", None)
    env.update({"DJANGO_SETTINGS_MODULE": "chatsite.settings", "PYTHONUNBUFFERED": "1"})
    env["CHAT_MODEL_TITLES"] = "false"  # titles stay the question's first words unless a test asks
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )


@contextmanager
def simulator_process(*args: str) -> Iterator[str]:
    """``manage.py simulate_upstream`` on a free port; yields its base URL."""
    server = ServerProcess([PYTHON, "manage.py", "simulate_upstream", "--port", "0", *args], base_env())
    try:
        yield server.wait_for(r"Simulator listening on (http://\S+)").group(1)
    finally:
        server.stop()


@contextmanager
def daphne_process(env: dict[str, str], port: int = 0) -> Iterator[str]:
    """A Daphne worker serving the site (on ``port``, or one the OS picks); yields its ``http://host:port``."""
    server = ServerProcess([*WORKER, "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"], env)
    try:
        match = server.wait_for(r"Listening on TCP address ([\d.]+):(\d+)")
        yield f"http://{match.group(1)}:{match.group(2)}"
    finally:
        server.stop()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with ``openssl`` in ``directory`` (needs openssl).

    The extensions are those Python 3.13's strict verification asks of a certificate trusted as its
    own authority.
    """
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            "-addext", "extendedKeyUsage=serverAuth",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key
