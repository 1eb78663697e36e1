"""Fast settings for the test suite; the production-profile tests bring their own."""

from chatsite.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHAT_DEMO = False
CHAT_API_BASE = "http://127.0.0.1:9/v1"  # each test points this at its own simulator
CHAT_API_KEY = ""
CHAT_MODEL = "demo"
CHAT_COALESCE_MS = 5
CHAT_CHECKPOINT_SECONDS = 0.2
CHAT_CONNECT_TIMEOUT = 3.0
CHAT_STALL_TIMEOUT = 5.0
CHAT_FIRST_TOKEN_TIMEOUT = 10.0
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT = None  # static files come from the finders; nothing is collected in tests
CHAT_SWEEP_SECONDS = 0  # tests sweep explicitly; a background job would outlive each test's loop
# Retries wait briefly; a Retry-After longer than a second is reported instead of waited for.
CHAT_RETRY_BACKOFF = 0.05
CHAT_RETRY_MAX_WAIT = 1.0
CHAT_MODEL_TITLES = False  # the tests of titles turn them on
