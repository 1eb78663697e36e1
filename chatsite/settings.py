"""Settings for the chat site, read from the environment.

The defaults run a laptop demo (SQLite, in-memory channel layer, the offline
upstream simulator); ``DATABASE_URL`` and ``REDIS_URL`` switch to the
production profile. Every variable is listed in the README.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url: str) -> dict[str, object]:
    """Turn ``sqlite:///path`` or ``postgres://user:pass@host:port/name`` into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("//"):  # sqlite:////abs/path
            path = path[1:]
        elif path.startswith("/"):  # sqlite:///relative/path
            path = str(BASE_DIR / path[1:])
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path or ":memory:"}
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": 0,
        }
    raise ImproperlyConfigured(f"DATABASE_URL has an unsupported scheme: {parts.scheme!r}")


DEBUG = env_bool("DJANGO_DEBUG", False)
# A fixed key is fine for the local demo; production must set its own.
DEMO_SECRET_KEY = "insecure-local-demo-key-set-DJANGO_SECRET_KEY-in-production"  # check chat.W001 names it
SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEMO_SECRET_KEY)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS ------------------------------------------------------------------------
# DJANGO_HTTPS: the site is served over HTTPS (by Daphne, or by a proxy in front). Cookies then
# travel over HTTPS only, plain HTTP is redirected (but /healthz, which balancers ask over HTTP),
# and browsers are told to use nothing else for DJANGO_HSTS_SECONDS.
# DJANGO_BEHIND_PROXY: a proxy in front sets X-Forwarded-Proto and appends the client's address
# to X-Forwarded-For; both are trusted only then (else anyone could claim to be on HTTPS, or
# anywhere). Only set it when every request comes through that proxy.
HTTPS = env_bool("DJANGO_HTTPS", False)
BEHIND_PROXY = env_bool("DJANGO_BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
# The page sends the CSRF token from its own markup (hx-headers), never from the cookie.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
# Only a request to hstspreload.org puts a domain on the browsers' list; this just allows one.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)

INSTALLED_APPS = [
    "daphne",
    "chat.apps.ChatAdminConfig",  # django.contrib.admin on the site's AdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
]

MIDDLEWARE = [
    "chat.middleware.client_address",
    "chat.log_context.request_ids",
    "django.middleware.security.SecurityMiddleware",
    "chat.middleware.refuse_nul_in_query",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "chatsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "chat.preferences.theme",
            ],
        },
    },
]

ASGI_APPLICATION = "chatsite.asgi.application"

DATABASES = {"default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Replies are written from worker threads while pages read: WAL and a busy
    # timeout keep SQLite from answering "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# Keep connections across requests and database trips: opening one (and SQLite's PRAGMAs, or a
# PostgreSQL handshake) on every trip would cost more than the trip. Checked before reuse.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
# DATABASE_POOL: psycopg's connection pool, one per worker process, shared by its threads: a worker
# holds at most DATABASE_POOL_MAX_SIZE connections, whatever it serves. Connections go back to the
# pool after each request or database trip, so persistent connections are off.
DATABASE_POOL = env_bool("DATABASE_POOL", False)
# DATABASE_PGBOUNCER: connections go through PgBouncer in transaction mode, where consecutive
# transactions may run on different server connections: no server-side cursors and no prepared
# statements (psycopg prepares repeated queries by default), which would be lost between them.
DATABASE_PGBOUNCER = env_bool("DATABASE_PGBOUNCER", False)
if (DATABASE_POOL or DATABASE_PGBOUNCER) and not _POSTGRES:
    raise ImproperlyConfigured("DATABASE_POOL and DATABASE_PGBOUNCER need a postgres:// DATABASE_URL")
if DATABASE_POOL:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN_SIZE", 2),
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
        # A request waits this long for a free connection before it fails with a clear error.
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
    }
if DATABASE_PGBOUNCER:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
# Redis behind Sentinel, for failover: "host:port,host:port" of the sentinels and the name they
# know the master by. Set, they take the place of REDIS_URL's host and port (its database number
# and password still apply).
REDIS_SENTINELS = [
    (host, int(port)) for host, _, port in (item.rpartition(":") for item in env_list("REDIS_SENTINELS", []))
]
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "mymaster")
if REDIS_SENTINELS and not REDIS_URL:
    raise ImproperlyConfigured(
        "REDIS_SENTINELS needs REDIS_URL too (redis://[:password@]host/db): its database number and "
        "password apply to whichever server the sentinels name as master"
    )
if REDIS_URL:
    # An idle worker waits on Redis for a while: redis-py's default 5 s socket timeout would read as
    # an outage every 5 s.
    _redis_host: dict[str, object] = {"address": REDIS_URL, "socket_timeout": 30}
    if REDIS_SENTINELS:
        _redis_url = urlsplit(REDIS_URL)
        # The sentinels are asked which server is the master (chat/redis_client.py says when).
        _redis_host = {
            "master_name": REDIS_SENTINEL_MASTER,
            "sentinels": REDIS_SENTINELS,
            "socket_timeout": 30,
            # A deposed master that no longer answers must not hold a worker for the full 30 s.
            "socket_connect_timeout": 5,
            "db": int(_redis_url.path.lstrip("/") or 0),
            "username": unquote(_redis_url.username or "") or None,
            "password": unquote(_redis_url.password or "") or None,
            "ssl": _redis_url.scheme == "rediss",
        }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.redis_client.SentinelChannelLayer"
            if REDIS_SENTINELS
            else "channels_redis.core.RedisChannelLayer",
            # One channel per worker process carries every frame it relays, so allow a deep queue.
            "CONFIG": {"hosts": [_redis_host], "capacity": 10000, "expiry": 30},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Django's model backend, loading the user's preferences (the page's theme) in the same query.
AUTHENTICATION_BACKENDS = ["chat.preferences.PreferencesBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))
# Serve from the finders so `make run` needs no collectstatic step; STATIC_ROOT is only
# filled by `collectstatic` in a deployment, so its absence is expected, not worth a warning.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)
WHITENOISE_AUTOREFRESH = DEBUG

# The page loads only its own static files; nothing inline may run.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
}

# Every line of the app's log carries the request id and the message id it is about (chat/log_context.py);
# CHAT_LOG_FORMAT=json writes one JSON object per line for a log collector.
CHAT_LOG_FORMAT = env_str("CHAT_LOG_FORMAT", "plain").strip().lower() or "plain"
if CHAT_LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"CHAT_LOG_FORMAT must be plain or json, not {CHAT_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "chat.log_context.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(message_id)s] %(message)s"},
        "json": {"()": "chat.log_context.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": CHAT_LOG_FORMAT, "filters": ["context"]}
    },
    "loggers": {
        "chat": {"handlers": ["console"], "level": env_str("CHAT_LOG_LEVEL", "INFO"), "propagate": False},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}

# --- The upstream: any OpenAI-compatible chat completions API -----------------
CHAT_API_BASE_DEFAULT = "https://api.arcee.ai/api/v1"
CHAT_API_BASE = env_str("CHAT_API_BASE", "").rstrip("/") or CHAT_API_BASE_DEFAULT
CHAT_API_KEY = env_str("CHAT_API_KEY", "") or env_str("ARCEE_API_KEY", "")
# With neither a key nor a base URL, replies come from the built-in simulator.
CHAT_DEMO = not CHAT_API_KEY and not env_str("CHAT_API_BASE", "")
CHAT_MODEL = env_str("CHAT_MODEL", "demo" if CHAT_DEMO else "trinity-mini")
CHAT_SYSTEM_PROMPT = env_str("CHAT_SYSTEM_PROMPT", "")
# Stored provider API keys are encrypted with a key derived from this (default: SECRET_KEY).
CHAT_ENCRYPTION_KEY = env_str("CHAT_ENCRYPTION_KEY", "")
CHAT_MODELS_CACHE_SECONDS = env_int("CHAT_MODELS_CACHE_SECONDS", 300)
CHAT_CONNECT_TIMEOUT = env_float("CHAT_CONNECT_TIMEOUT", 10.0)
# From sending the request to the first token (prompt processing of a long history can be slow).
CHAT_FIRST_TOKEN_TIMEOUT = env_float("CHAT_FIRST_TOKEN_TIMEOUT", 120.0)
# Silence between two chunks once the answer has started (CHAT_READ_TIMEOUT is its older name).
CHAT_STALL_TIMEOUT = env_float("CHAT_STALL_TIMEOUT", env_float("CHAT_READ_TIMEOUT", 60.0))
# The longest a whole reply may take.
CHAT_REPLY_DEADLINE = env_float("CHAT_REPLY_DEADLINE", 900.0)
# Before the first token only: retries of connection failures, 429 and 502/503/504.
CHAT_RETRIES = env_int("CHAT_RETRIES", 2)
CHAT_RETRY_BACKOFF = env_float("CHAT_RETRY_BACKOFF", 1.0)  # first wait; doubles each time
CHAT_RETRY_MAX_WAIT = env_float("CHAT_RETRY_MAX_WAIT", 20.0)  # a longer Retry-After is not waited for
# Connections to upstreams per worker: at least the concurrent replies a worker should carry.
CHAT_MAX_CONNECTIONS = env_int("CHAT_MAX_CONNECTIONS", 2000)

# --- Streaming ----------------------------------------------------------------
# After a frame, a reply's text waits this long before the next one: CHAT_COALESCE_MS while the
# worker is quiet, widening with the replies it is writing up to CHAT_COALESCE_MAX_MS (fewer,
# fuller frames when it is busy). A reply's first text and its ending never wait.
CHAT_COALESCE_MS = env_int("CHAT_COALESCE_MS", 30)
CHAT_COALESCE_MAX_MS = env_int("CHAT_COALESCE_MAX_MS", 120)
if CHAT_COALESCE_MAX_MS < CHAT_COALESCE_MS:
    raise ImproperlyConfigured("CHAT_COALESCE_MAX_MS must be at least CHAT_COALESCE_MS")
CHAT_CHECKPOINT_SECONDS = env_float("CHAT_CHECKPOINT_SECONDS", 1.0)
# A streaming reply's worker renews its lease at least every third of this; a reply whose lease
# ran out belongs to a dead worker and is marked interrupted.
CHAT_LEASE_SECONDS = env_float("CHAT_LEASE_SECONDS", 15.0)
# How often each worker looks for such replies (0: only when a conversation is opened).
CHAT_SWEEP_SECONDS = env_float("CHAT_SWEEP_SECONDS", CHAT_LEASE_SECONDS / 2)
# On SIGTERM, running replies get this long to finish before they are saved as interrupted.
CHAT_SHUTDOWN_GRACE_SECONDS = env_float("CHAT_SHUTDOWN_GRACE_SECONDS", 20.0)
# The event loop of a worker started with ``python -m chatsite.serve``: uvloop (libuv under asyncio's
# API, about a tenth less CPU per streamed token), or asyncio (Python's own).
CHAT_EVENT_LOOP = env_str("CHAT_EVENT_LOOP", "uvloop").strip().lower()
if CHAT_EVENT_LOOP not in ("uvloop", "asyncio"):
    raise ImproperlyConfigured(f"CHAT_EVENT_LOOP must be uvloop or asyncio, not {CHAT_EVENT_LOOP!r}")
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 100_000)
# The context window (tokens) of a model whose server's /models reports none, for the server the
# environment configures (an admin-added provider has its own field). What goes upstream is cut to
# fit it, oldest turns first; see chat/context.py.
CHAT_CONTEXT_LENGTH = env_int("CHAT_CONTEXT_LENGTH", 32_768)
# Ask the model for a short title after a conversation's first reply (off: its first words stay).
CHAT_MODEL_TITLES = env_bool("CHAT_MODEL_TITLES", True)
CHAT_TITLE_TIMEOUT = env_float("CHAT_TITLE_TIMEOUT", 20.0)

# The offline demo simulator's pace.
CHAT_DEMO_TOKENS_PER_SECOND = env_float("CHAT_DEMO_TOKENS_PER_SECOND", 30.0)
CHAT_DEMO_REPLY_TOKENS = env_int("CHAT_DEMO_REPLY_TOKENS", 120)

# --- Accounts -------------------------------------------------------------------
# How people get an account: "closed" (admins create them), "invite" (single-use links made in
# the admin) or "approval" (anyone asks; an admin approves). Admins can switch it in the admin's
# site settings, which take precedence.
CHAT_SIGNUP = env_str("CHAT_SIGNUP", "closed").strip().lower() or "closed"
if CHAT_SIGNUP not in {"closed", "invite", "approval"}:
    raise ImproperlyConfigured(f"CHAT_SIGNUP must be closed, invite or approval, not {CHAT_SIGNUP!r}")
CHAT_INVITE_DAYS = env_int("CHAT_INVITE_DAYS", 7)  # how long a new invite link works
# Password reset mails; the console backend prints them. For real mail set EMAIL_BACKEND to
# django.core.mail.backends.smtp.EmailBackend and the EMAIL_* variables (read only for SMTP).
_EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
MAILERS = {
    "default": {
        "BACKEND": _EMAIL_BACKEND,
        "OPTIONS": {
            "host": env_str("EMAIL_HOST", "localhost"),
            "port": env_int("EMAIL_PORT", 25),
            "username": env_str("EMAIL_HOST_USER", ""),
            "password": env_str("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", False),
            "timeout": 10,
        }
        if _EMAIL_BACKEND.endswith("smtp.EmailBackend")
        else {},
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "chat@localhost")

# --- Limits (per user; admins override them per group). Empty or 0: no limit -----
CHAT_LIMIT_MESSAGES_PER_MINUTE = env_int("CHAT_LIMIT_MESSAGES_PER_MINUTE", 0)
CHAT_LIMIT_MESSAGES_PER_DAY = env_int("CHAT_LIMIT_MESSAGES_PER_DAY", 0)
CHAT_LIMIT_CONCURRENT_REPLIES = env_int("CHAT_LIMIT_CONCURRENT_REPLIES", 0)
CHAT_LIMIT_TOKENS_PER_DAY = env_int("CHAT_LIMIT_TOKENS_PER_DAY", 0)
CHAT_LIMIT_TOKENS_PER_MONTH = env_int("CHAT_LIMIT_TOKENS_PER_MONTH", 0)
# Replies streaming from upstream at once, across every worker of the instance.
CHAT_MAX_UPSTREAM_STREAMS = env_int("CHAT_MAX_UPSTREAM_STREAMS", 0)

# --- Sign-in throttling ----------------------------------------------------------
# After this many failed sign-ins for one username, or from one address, within
# CHAT_LOGIN_LOCKOUT_SECONDS, sign-in is refused (429) until that window ends, the right password
# included. Counted in Redis when REDIS_URL is set, else in the database: every worker sees them.
# 0: not counted.
CHAT_LOGIN_FAILURES_PER_USERNAME = env_int("CHAT_LOGIN_FAILURES_PER_USERNAME", 5)
CHAT_LOGIN_FAILURES_PER_ADDRESS = env_int("CHAT_LOGIN_FAILURES_PER_ADDRESS", 20)
CHAT_LOGIN_LOCKOUT_SECONDS = env_int("CHAT_LOGIN_LOCKOUT_SECONDS", 900)
if CHAT_LOGIN_LOCKOUT_SECONDS <= 0:
    raise ImproperlyConfigured("CHAT_LOGIN_LOCKOUT_SECONDS must be a positive number of seconds")

# --- Oversight ------------------------------------------------------------------
# Tell users on their conversation's page when an administrator read it in the admin.
CHAT_AUDIT_NOTIFY_USERS = env_bool("CHAT_AUDIT_NOTIFY_USERS", True)

# --- Retention ------------------------------------------------------------------
# `manage.py purge_conversations` (from cron or a systemd timer) deletes conversations last
# updated more than this many days ago. Empty or 0: conversations are kept forever.
CHAT_RETENTION_DAYS = env_int("CHAT_RETENTION_DAYS", 0) or None
if CHAT_RETENTION_DAYS is not None and CHAT_RETENTION_DAYS < 0:
    raise ImproperlyConfigured(f"CHAT_RETENTION_DAYS must be a number of days, not {CHAT_RETENTION_DAYS}")
