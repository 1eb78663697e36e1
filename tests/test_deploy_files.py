"""The files in deploy/: they name every setting, point at what exists, and systemd accepts them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.processes import ROOT, in_ci

DEPLOY = ROOT / "deploy"
# Older names the settings still read, listed under their current ones.
ALIASES = {"CHAT_READ_TIMEOUT"}


def settings_variables() -> set[str]:
    source = (ROOT / "chatsite" / "settings.py").read_text()
    typed = re.findall(r'env_(?:str|bool|int|float|list)\("([A-Z0-9_]+)"', source)
    direct = re.findall(r'os\.(?:environ\.get\(|environ\[|getenv\()"([A-Z0-9_]+)"', source)
    return set(typed + direct) - ALIASES


def shutdown_grace_default() -> float:
    source = (ROOT / "chatsite" / "settings.py").read_text()
    return float(re.search(r'env_float\("CHAT_SHUTDOWN_GRACE_SECONDS", ([\d.]+)\)', source).group(1))


def example_variables() -> set[str]:
    return set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", (DEPLOY / "env.example").read_text(), re.MULTILINE))


def test_env_example_lists_every_variable_the_settings_read_and_no_other():
    read, listed = settings_variables(), example_variables()
    assert len(read) > 60
    assert read - listed == set(), "read by the settings, missing from deploy/env.example"
    assert listed - read == set(), "in deploy/env.example, read by nothing"


def test_env_example_holds_no_secret():
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", (DEPLOY / "env.example").read_text(), re.MULTILINE))
    for name in ("DJANGO_SECRET_KEY", "CHAT_API_KEY"):
        assert values[name] == ""


def test_every_variable_is_in_the_readme_settings_table():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in settings_variables() if f"`{name}`" not in readme]
    assert not missing


def units(directory: Path) -> list[Path]:
    """The units with /srv/chat (the install's path) pointing at this checkout, whose .venv exists."""
    copies = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        copy = directory / unit.name
        copy.write_text(unit.read_text().replace("/srv/chat", str(ROOT)))
        copies.append(copy)
    return copies


def test_systemd_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if in_ci():
            pytest.fail("systemd-analyze is not installed")
        pytest.skip("systemd-analyze is not installed")
    copies = units(tmp_path)
    done = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, copies)], capture_output=True, text=True, timeout=60
    )
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        # The units name the service account and the env file of an install, not of this machine.
        if line.strip() and "chat.env" not in line
    ]
    assert done.returncode == 0 and not complaints, "\n".join(complaints)


def test_the_worker_unit_outlasts_the_shutdown_grace_and_runs_one_worker_per_port():
    unit = (DEPLOY / "systemd" / "chat@.service").read_text()
    assert "-p %i chatsite.asgi:application" in unit
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE).group(1))
    assert stop > shutdown_grace_default() + 10
    assert "Requires=chat-migrate.service" in unit


def test_compose_gives_stopping_workers_the_shutdown_grace_too():
    compose = (DEPLOY / "compose.yaml").read_text()
    stop = int(re.search(r"stop_grace_period: (\d+)s", compose).group(1))
    assert stop > shutdown_grace_default() + 10


def test_every_management_command_the_deploy_files_run_exists():
    from django.core.management import get_commands

    files = [*sorted((DEPLOY / "systemd").iterdir()), DEPLOY / "Dockerfile", DEPLOY / "compose.yaml"]
    named = set()
    for path in files:
        named |= set(re.findall(r'manage\.py"?,? "?([a-z_]+)', path.read_text()))
    assert {"migrate", "collectstatic", "sweep_replies", "purge_conversations"} <= named
    assert named <= set(get_commands())


def test_each_timer_starts_a_service_that_exists():
    timers = sorted((DEPLOY / "systemd").glob("*.timer"))
    assert {timer.stem for timer in timers} == {"chat-sweep", "chat-purge"}
    for timer in timers:
        assert (timer.with_suffix(".service")).exists()
    assert "OnCalendar=hourly" in (DEPLOY / "systemd" / "chat-sweep.timer").read_text()
    assert "purge_conversations --yes" in (DEPLOY / "systemd" / "chat-purge.service").read_text()


def test_nginx_serves_the_static_files_chat_migrate_collects():
    migrate = (DEPLOY / "systemd" / "chat-migrate.service").read_text()
    assert "manage.py collectstatic --noinput" in migrate
    home = re.search(r"^WorkingDirectory=(\S+)$", migrate, re.MULTILINE).group(1)
    site = (DEPLOY / "nginx" / "chat.conf").read_text()
    static = site[site.index("location /static/") :]
    static = static[: static.index("}")]
    # STATIC_ROOT's default is staticfiles/ in the project, the working directory.
    assert f"alias {home}/staticfiles/;" in static


def test_the_image_installs_the_server_packages_only():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile
    assert "requirements-dev" not in dockerfile
    for copied in re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE):
        assert (ROOT / copied).exists(), copied
    assert "/healthz" in dockerfile


def test_compose_wires_the_workers_to_its_services_and_nginx_to_the_workers():
    compose = (DEPLOY / "compose.yaml").read_text()
    services = set(re.findall(r"^  ([a-z0-9]+):", compose, re.MULTILINE))
    assert {"postgres", "redis", "migrate", "worker1", "worker2", "nginx"} <= services
    assert "DATABASE_URL: postgres://chat:chat@postgres:5432/chat" in compose
    assert "REDIS_URL: redis://redis:6379/0" in compose
    assert "dockerfile: deploy/Dockerfile" in compose
    assert (DEPLOY / "nginx" / "compose.conf").exists()
    upstream = (DEPLOY / "nginx" / "compose.conf").read_text()
    for worker in re.findall(r"server (\w+):8000;", upstream):
        assert worker in services
    assert len(re.findall(r"server (\w+):8000;", upstream)) == 2


@pytest.mark.parametrize("name", ["chat.conf", "compose.conf"])
def test_the_nginx_sites_upgrade_sockets_and_keep_long_streams_open(name):
    site = (DEPLOY / "nginx" / name).read_text()
    sockets = site[site.index("location /ws/") :]
    sockets = sockets[: sockets.index("}")]
    assert "proxy_set_header Upgrade $http_upgrade;" in sockets
    assert "proxy_set_header Connection $connection_upgrade;" in sockets
    assert "proxy_read_timeout 1h;" in sockets and "proxy_buffering off;" in sockets
    assert "X-Forwarded-Proto $scheme" in sockets and "X-Forwarded-For $proxy_add_x_forwarded_for" in sockets
    assert "map $http_upgrade $connection_upgrade" in site
    assert "X-Request-ID $request_id" in sockets


def test_the_nginx_site_leaves_hsts_to_the_site():
    # Django sends it (DJANGO_HTTPS, DJANGO_HSTS_SECONDS): a second copy from nginx would disagree.
    assert "Strict-Transport-Security" not in (DEPLOY / "nginx" / "chat.conf").read_text()
