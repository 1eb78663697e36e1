"""Production settings: `check --deploy` clean; HTTPS and the proxy read from the environment."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.processes import PYTHON, ROOT, base_env

SECRET = "q8W-3mZp0rT7vYx2LkN5bHc9JdF4sGa1eUi6oPl0QwErTyUiOp"
PRODUCTION = {
    "DATABASE_URL": "postgres://chat@db.internal:5432/chat",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "DJANGO_SECRET_KEY": SECRET,
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    "DJANGO_HTTPS": "true",
    "DJANGO_BEHIND_PROXY": "true",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "mail.example.com",
}


def check_deploy(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_under(**env: str) -> dict:
    """The settings the site reads from ``env`` (a fresh interpreter, as a worker starts)."""
    names = [
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "CSRF_COOKIE_HTTPONLY",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_PROXY_SSL_HEADER",
        "SECURE_REDIRECT_EXEMPT",
        "DATABASES",
    ]
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {names!r}}}, default=str))"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=base_env(**env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_check_deploy_is_clean_in_the_production_profile():
    done = check_deploy(**PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


@pytest.mark.parametrize(
    ("left_out", "warnings"),
    [
        ("DJANGO_HTTPS", ["security.W004", "security.W008", "security.W012", "security.W016"]),
        ("DJANGO_SECRET_KEY", ["chat.W001"]),
        ("EMAIL_BACKEND", ["mail.E001"]),
    ],
)
def test_check_deploy_names_what_a_deployment_left_out(left_out, warnings):
    env = {key: value for key, value in PRODUCTION.items() if key != left_out}
    done = check_deploy(**env)
    assert done.returncode != 0
    for warning in warnings:
        assert warning in done.stderr


def test_https_makes_cookies_secure_and_turns_on_redirects_and_hsts():
    https = settings_under(**PRODUCTION)
    assert https["SESSION_COOKIE_SECURE"] and https["CSRF_COOKIE_SECURE"]
    assert https["SESSION_COOKIE_HTTPONLY"] and https["CSRF_COOKIE_HTTPONLY"]
    assert https["SECURE_SSL_REDIRECT"] and https["SECURE_HSTS_SECONDS"] == 31_536_000
    assert https["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert https["SECURE_REDIRECT_EXEMPT"] == ["^healthz$"]  # balancers ask over plain HTTP

    plain = settings_under()
    assert not plain["SESSION_COOKIE_SECURE"] and not plain["SECURE_SSL_REDIRECT"]
    assert plain["SECURE_HSTS_SECONDS"] == 0 and plain["SECURE_PROXY_SSL_HEADER"] is None
    assert plain["SESSION_COOKIE_HTTPONLY"] and plain["CSRF_COOKIE_HTTPONLY"]


def test_the_pool_and_pgbouncer_settings_shape_the_database_connection():
    pooled = settings_under(**PRODUCTION, DATABASE_POOL="true", DATABASE_POOL_MAX_SIZE="8")["DATABASES"][
        "default"
    ]
    assert pooled["CONN_MAX_AGE"] == 0
    assert pooled["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 8, "timeout": 10.0}
    bouncer = settings_under(**PRODUCTION, DATABASE_PGBOUNCER="true")["DATABASES"]["default"]
    assert bouncer["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert bouncer["OPTIONS"]["prepare_threshold"] is None


@pytest.mark.parametrize("name", ["DATABASE_POOL", "DATABASE_PGBOUNCER"])
def test_the_pool_and_pgbouncer_settings_need_postgresql(name):
    done = check_deploy(**{name: "true"})
    assert done.returncode != 0
    assert "DATABASE_POOL and DATABASE_PGBOUNCER need a postgres:// DATABASE_URL" in done.stderr
