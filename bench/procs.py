"""Child processes (the simulator, Daphne, manage.py) and what /proc says about them."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# A worker as the deploy files start one: Daphne, on the event loop the settings name.
WORKER = [PYTHON, "-m", "chatsite.serve"]
_TICK = os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one (children inherit it); return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def base_env(**overrides: str) -> dict[str, str]:
    """The inherited environment without the app's own settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "DJANGO_"))}
    env.pop("ARCEE_API_KEY", None)
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update({"DJANGO_SETTINGS_MODULE": "chatsite.settings", "PYTHONUNBUFFERED": "1"})
    # The figures are about replies; a model-written title is one extra request per conversation.
    env["CHAT_MODEL_TITLES"] = "false"
    env.update(overrides)
    return env


class Server:
    """A long-running child whose output goes to a log file (no reader thread in the bench process)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.pid = self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            if match := regex.search(self.output()):
                return match
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = "".join(self.output().splitlines(keepends=True)[-40:])
                raise RuntimeError(f"{self.name}: {pattern!r} never appeared; last output:\n{tail}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_simulator(logdir: Path) -> tuple[Server, str]:
    """``manage.py simulate_upstream`` on a free port; the server and its base URL (``…/v1``)."""
    server = Server(
        "simulator",
        [PYTHON, "manage.py", "simulate_upstream", "--port", "0", "--tokens-per-second", "50"],
        base_env(),
        logdir,
    )
    try:
        return server, server.wait_for(r"Simulator listening on (http://\S+)").group(1)
    except Exception:
        server.stop()
        raise


def app_env(database_url: str, api_base: str) -> dict[str, str]:
    return base_env(DATABASE_URL=database_url, CHAT_API_BASE=api_base, CHAT_MODEL="demo")


def manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args[:1])} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def start_daphne(name: str, env: dict[str, str], logdir: Path) -> tuple[Server, str]:
    """A Daphne worker on a free port; the server and its ``http://127.0.0.1:PORT``."""
    server = Server(name, [*WORKER, "-b", "127.0.0.1", "-p", "0", "chatsite.asgi:application"], env, logdir)
    try:
        match = server.wait_for(r"Listening on TCP address ([\d.]+):(\d+)")
    except Exception:
        server.stop()
        raise
    return server, f"http://{match.group(1)}:{match.group(2)}"


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    version = sys.version.split()[0]
    return f"{model}, {cores} cores, Python {version}"
