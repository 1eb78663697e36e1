"""``/healthz``: 200 when the database and the channel layer answer, 503 naming what does not."""

from __future__ import annotations

import pytest
from channels.layers import channel_layers
from django.test import AsyncClient

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_healthy_worker_answers_200_without_login():
    response = await AsyncClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}
    assert "no-cache" in response["Cache-Control"]


async def test_a_channel_layer_that_cannot_relay_makes_it_503(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:9/0", "socket_connect_timeout": 0.5}]},
        }
    }
    channel_layers.backends.clear()
    try:
        response = await AsyncClient().get("/healthz")
    finally:
        channel_layers.backends.clear()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"] == "ok"
    assert body["channel_layer"].startswith("unavailable (") or body["channel_layer"].startswith("no answer")


async def test_only_get_is_answered():
    assert (await AsyncClient().post("/healthz")).status_code == 405
