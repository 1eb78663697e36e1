"""Log lines carry the request and message they are about; JSON lines for log collectors."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import Client

from chat.log_context import ContextFilter, JsonFormatter
from tests.test_upstream_failures import turn

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_http_request_gets_an_id_and_a_sane_one_from_the_proxy_is_kept(client: Client, alice):
    client.force_login(alice)
    made = client.get("/")["X-Request-ID"]
    assert len(made) == 16 and made != client.get("/")["X-Request-ID"]
    assert client.get("/", HTTP_X_REQUEST_ID="lb-7f3a.42")["X-Request-ID"] == "lb-7f3a.42"
    refused = client.get("/", HTTP_X_REQUEST_ID="bad id\nwith a newline")["X-Request-ID"]
    assert refused != "bad id\nwith a newline" and len(refused) == 16


async def test_a_replys_log_lines_carry_its_request_and_message_ids_as_json(
    alice, alice_conversation, upstream
):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    chat_logger = logging.getLogger("chat")
    chat_logger.addHandler(handler)
    try:
        reply, _ = await turn(alice, alice_conversation, "demo?fault=status-503")
    finally:
        chat_logger.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    about = [line for line in lines if line["message_id"] == str(reply.pk)]
    assert about, lines
    assert all(line["request_id"] == reply.request_id for line in about)
    assert any("status 503" in line["message"] for line in about)
    assert {"time", "level", "logger", "message"} <= set(about[0])
