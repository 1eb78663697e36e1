"""The lean install: requirements.txt is what the server needs; requirements-dev.txt adds the tools."""

from __future__ import annotations

import re
import subprocess

from tests.processes import PYTHON, ROOT, base_env

# Import names of the packages that only requirements-dev.txt installs.
DEV_ONLY = ["pytest", "pytest_django", "pytest_asyncio", "hypothesis", "playwright", "ruff", "websockets"]


def pinned(name: str) -> dict[str, str]:
    """``package -> version`` of one requirements file (lowercase, ``_`` as ``-``)."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-r "):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([\w.]+)(?:\s*;\s*[^;]+)?", line)  # a marker may follow
        assert match, f"{name}: {line!r} is not pinned to one version"
        found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def test_the_runtime_file_holds_no_test_or_development_tool():
    runtime = pinned("requirements.txt")
    for tool in (
        "pytest",
        "pytest-django",
        "pytest-asyncio",
        "hypothesis",
        "playwright",
        "ruff",
        "websockets",
    ):
        assert tool not in runtime
    for needed in ("django", "channels", "daphne", "httpx", "psycopg", "psycopg-pool", "channels-redis"):
        assert needed in runtime


def test_the_development_file_adds_the_tools_to_the_runtime_file():
    lines = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in lines
    dev = pinned("requirements-dev.txt")
    assert {"pytest", "pytest-django", "playwright", "ruff"} <= set(dev)
    assert not set(dev) & set(pinned("requirements.txt")), "a package is pinned in both files"


def test_the_server_imports_nothing_that_only_the_development_file_installs():
    # Every module of the site, imported in a fresh interpreter where the development packages
    # cannot be imported (as on a server installed from requirements.txt alone).
    code = f"""
import importlib, pkgutil, sys
for name in {DEV_ONLY!r}:
    sys.modules[name] = None
import django
django.setup()
import chat, chatsite
for package in (chat, chatsite):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
from django.core.management import call_command
call_command("check")
print("imported")
"""
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("imported")
