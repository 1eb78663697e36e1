"""``/healthz``: 200 when the database and the channel layer answer, 503 naming what does not."""

from __future__ import annotations

import httpx
import pytest
from channels.layers import channel_layers
from django.test import AsyncClient, Client

from tests.processes import base_env, daphne_process
from tests.production.support import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fresh_layers():
    """Channel layers built from the settings of the test, not kept from an earlier one."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def test_a_healthy_worker_answers_200_without_login():
    response = await AsyncClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}
    assert "no-store" in response["Cache-Control"]
    assert response["Content-Type"] == "application/json"


async def test_a_channel_layer_that_cannot_relay_makes_it_503(settings, fresh_layers):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:9/0", "socket_connect_timeout": 0.5}]},
        }
    }
    response = await AsyncClient().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"] == "ok"
    assert body["channel_layer"].startswith("unavailable (") or body["channel_layer"].startswith("no answer")
    assert "127.0.0.1" not in response.content.decode()
    assert "no-store" in response["Cache-Control"]


async def test_a_healthy_upstream_is_reported_when_asked(upstream):
    response = await AsyncClient().get("/healthz?upstream=1")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok", "upstream": "ok"}


async def test_a_failing_upstream_is_reported_but_does_not_make_it_503(settings):
    settings.CHAT_DEMO = False
    settings.CHAT_API_BASE = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    response = await AsyncClient().get("/healthz?upstream=1")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["upstream"] == "unavailable (no model list)"
    assert "127.0.0.1" not in response.content.decode()


async def test_a_failing_upstream_makes_it_503_when_required(settings):
    settings.CHAT_DEMO = False
    settings.CHAT_API_BASE = f"http://127.0.0.1:{free_port()}/v1"
    response = await AsyncClient().get("/healthz?upstream=required")
    assert response.status_code == 503
    assert response.json()["upstream"] == "unavailable (no model list)"


async def test_a_required_upstream_that_answers_keeps_it_200(upstream):
    response = await AsyncClient().get("/healthz?upstream=required")
    assert response.status_code == 200
    assert response.json()["upstream"] == "ok"


async def test_an_upstream_answering_with_an_error_is_reported_without_its_words(upstream, settings):
    settings.CHAT_API_BASE = upstream.base_url.removesuffix("/v1") + "/v2"  # the simulator answers 404
    response = await AsyncClient().get("/healthz?upstream=1")
    assert response.status_code == 200
    assert response.json()["upstream"] == "unavailable (no model list)"
    assert "Unknown request URL" not in response.content.decode()


async def test_without_the_parameter_the_upstream_is_not_asked(settings):
    settings.CHAT_DEMO = False
    settings.CHAT_API_BASE = f"http://127.0.0.1:{free_port()}/v1"
    response = await AsyncClient().get("/healthz?upstream=0")
    assert response.status_code == 200
    assert "upstream" not in response.json()


async def test_an_unknown_upstream_value_is_a_clear_400():
    response = await AsyncClient().get("/healthz?upstream=maybe")
    assert response.status_code == 400
    assert response.json() == {
        "status": "bad request",
        "error": "upstream must be 1 (report it) or required (count it)",
    }


async def test_only_get_is_answered():
    assert (await AsyncClient().post("/healthz")).status_code == 405


def test_a_host_outside_allowed_hosts_is_refused(settings):
    # A balancer that checks workers by address must send a Host header that is allowed.
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    assert Client().get("/healthz", HTTP_HOST="10.0.0.5:8001").status_code == 400
    assert Client().get("/healthz", HTTP_HOST="chat.example.com").status_code == 200


@pytest.mark.live
def test_a_worker_whose_database_is_down_answers_503():
    # A PostgreSQL address where nothing listens: the worker starts, and says what it lacks.
    env = base_env(DATABASE_URL=f"postgres://chat@127.0.0.1:{free_port()}/chat")
    with daphne_process(env) as url:
        response = httpx.get(f"{url}/healthz", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "unavailable (OperationalError)"
    assert body["channel_layer"] == "ok"
