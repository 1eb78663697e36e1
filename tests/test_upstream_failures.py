"""Every way an OpenAI-compatible server answers or fails, through the real path.

Each case sends a message over the conversation socket; the reply streams from the simulator on
loopback (the fault chosen in the model name), and the test checks what was stored (status,
reason, text kept) and what the page was told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.utils.html import escape

from chat import streaming
from chat.models import Conversation, Message, Provider
from chat.simulator import (
    BAD_UTF8_TEXT_DECODED,
    STREAM_ERROR_MESSAGES,
    SimulatorConfig,
    SimulatorThread,
    reasoning_text,
    reply_text,
)
from chat.upstream import ChatRequest, Endpoint, TextDelta, stream_chat
from tests.test_consumers import frames_until_final, join, latest_reply, send

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "tell me"


def expected(tokens: int) -> str:
    return reply_text([{"role": "user", "content": TEXT}], tokens)


async def turn(user, conversation, model: str, text: str = TEXT) -> tuple[Message, str]:
    """Send one message and wait for its reply to end: the stored reply and every frame the page got."""
    communicator, _ = await join(user, conversation)
    await send(communicator, text, model)
    frames = await frames_until_final(communicator, wait=15)
    await streaming.wait_all()
    await communicator.disconnect()
    return await latest_reply(conversation), "".join(frames)


def unique(model: str) -> str:
    """A model string no other test uses (the simulator counts flaky faults per model string)."""
    return f"{model}&id={uuid.uuid4().hex}"


# --- HTTP status before the stream -------------------------------------------------------

STATUS_CASES = [
    ("status-400", "The model server refused the request (400). Bad Request."),
    (
        "status-400-context",
        "The conversation is too long for this model's context window (400). This model's maximum "
        "context length is 8192 tokens.",
    ),
    ("status-401", "The API key was rejected (401). Incorrect API key provided."),
    ("status-403", "The API key was rejected (403)."),
    ("status-404", "The model or the API address was not found (404)."),
    ("status-408", "The model server timed out waiting for the request (408)."),
    ("status-413", "The request was too large for the model server (413)."),
    ("status-422", "The model server could not process the request (422)."),
    ("detail-status-422", "The model server could not process the request (422). Invalid model parameters."),
    ("status-429", "The model server is rate limiting requests (429). Try again in 7 seconds."),
    ("status-500", "The model server had an error (500)."),
    ("status-503", "The model server had an error (503)."),
    ("detail-status-503", "The model server had an error (503). Model is loading, please retry."),
    ("text-status-502", "The model server had an error (502). upstream connect error or disconnect"),
    ("html-status-502", "The model server had an error (502)."),
    ("not-sse", "The server did not answer with a stream (it sent text/html)."),
]


@pytest.mark.parametrize(("fault", "reason"), STATUS_CASES, ids=[case[0] for case in STATUS_CASES])
async def test_an_answer_that_is_not_a_stream_ends_error_with_one_sentence(
    alice, alice_conversation, upstream, fault, reason
):
    reply, frames = await turn(alice, alice_conversation, f"demo?fault={fault}")
    assert reply.status == Message.Status.ERROR
    assert reply.error.startswith(reason)
    assert reply.content == ""
    assert "<" not in reply.error  # an HTML page is never shown, not even as markup text
    assert escape(reason) in frames


@pytest.mark.parametrize(
    ("options", "wait"),
    [
        ("retry_after_ms=90000", "Try again in 90 seconds."),
        ("retry_after=600", "Try again in 10 minutes."),
    ],
)
async def test_rate_limit_says_when_to_retry(alice, alice_conversation, upstream, options, wait):
    reply, _ = await turn(alice, alice_conversation, f"demo?fault=status-429&{options}")
    assert reply.error == f"The model server is rate limiting requests (429). {wait} Rate limit reached."


async def test_rate_limit_with_an_http_date(alice, alice_conversation, upstream):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=45), usegmt=True)
    reply, _ = await turn(alice, alice_conversation, f"demo?fault=status-429&retry_after={when}")
    limited = r"The model server is rate limiting requests \(429\)\."
    assert re.fullmatch(rf"{limited} Try again in 4\d seconds\. Rate limit reached\.", reply.error)


# --- Retries: before the first token only ---------------------------------------------------


@pytest.mark.parametrize("fault", ["flaky-503-2", "flaky-502-1", "flaky-504-1", "flaky-drop-2"])
async def test_transient_failures_before_the_stream_are_retried(alice, alice_conversation, upstream, fault):
    before = upstream.stats.chat_requests
    reply, frames = await turn(alice, alice_conversation, unique(f"demo?tokens=6&fault={fault}"))
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == expected(6)
    assert upstream.stats.chat_requests - before == int(fault.rsplit("-", 1)[1]) + 1
    # The page is told while it waits, and the note goes once the answer starts.
    notes = re.findall(rf'<p id="m-{reply.pk}-note" class="([^"]*)"[^>]*>([^<]*)</p>', frames)
    shown = [text for classes, text in notes if "visually-hidden" not in classes]
    assert shown and all(text.endswith("Trying again now…") for text in shown)
    assert notes[-1] == ("message-note visually-hidden", "Writing…")


async def test_a_rate_limit_is_retried_after_the_wait_it_asks_for(alice, alice_conversation, upstream):
    before = upstream.stats.chat_requests
    model = unique("demo?tokens=4&fault=flaky-429-1&retry_after_ms=300")
    reply, _ = await turn(alice, alice_conversation, model)
    assert reply.status == Message.Status.COMPLETE
    assert upstream.stats.chat_requests - before == 2
    assert reply.first_token_ms >= 300


async def test_a_rate_limit_asking_for_a_long_wait_is_reported_not_waited_for(
    alice, alice_conversation, upstream
):
    before = upstream.stats.chat_requests
    reply, _ = await turn(alice, alice_conversation, unique("demo?fault=flaky-429-1&retry_after=30"))
    assert reply.status == Message.Status.ERROR
    assert "Try again in 30 seconds." in reply.error
    assert upstream.stats.chat_requests - before == 1


async def test_retries_stop_after_the_configured_number(alice, alice_conversation, upstream, settings):
    settings.CHAT_RETRIES = 2
    before = upstream.stats.chat_requests
    reply, _ = await turn(alice, alice_conversation, unique("demo?fault=flaky-503-5"))
    assert reply.status == Message.Status.ERROR
    assert reply.error.startswith("The model server had an error (503).")
    assert upstream.stats.chat_requests - before == 3


async def test_stop_while_waiting_to_retry_ends_the_reply_at_once(
    alice, alice_conversation, upstream, settings
):
    settings.CHAT_RETRY_BACKOFF = 0.8
    before = upstream.stats.chat_requests
    communicator, _ = await join(alice, alice_conversation)
    await send(communicator, TEXT, unique("demo?fault=flaky-503-5"))
    while "Trying again" not in await communicator.receive_from(timeout=5):
        pass
    # A page that opens now is shown the wait too.
    second, snapshot = await join(alice, alice_conversation)
    assert "Trying again" in "".join(snapshot)
    await second.disconnect()
    await communicator.send_json_to({"action": "stop"})
    await frames_until_final(communicator)
    await streaming.wait_all()
    await communicator.disconnect()
    reply = await latest_reply(alice_conversation)
    assert reply.status == Message.Status.STOPPED and reply.content == ""
    assert upstream.stats.chat_requests - before == 1  # the retry never went out


async def test_errors_that_would_fail_again_are_not_retried(alice, alice_conversation, upstream):
    before = upstream.stats.chat_requests
    reply, _ = await turn(alice, alice_conversation, unique("demo?fault=flaky-500-1"))
    assert reply.status == Message.Status.ERROR
    assert upstream.stats.chat_requests - before == 1


@pytest.mark.parametrize(
    "fault", ["cut-off-after-3", "stream-error-openai-after-3", "stall-after-3"], ids=lambda f: f
)
async def test_nothing_is_retried_once_the_stream_has_begun(
    alice, alice_conversation, upstream, settings, fault
):
    settings.CHAT_STALL_TIMEOUT = 0.3
    before = upstream.stats.chat_requests
    reply, _ = await turn(alice, alice_conversation, f"demo?tokens=8&fault={fault}")
    assert reply.status == Message.Status.ERROR
    assert reply.content == expected(3)  # kept once, never written twice
    assert upstream.stats.chat_requests - before == 1


# --- Connections that never answer ------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_connection_refused(alice, alice_conversation, settings):
    port = closed_port()
    settings.CHAT_API_BASE = f"http://127.0.0.1:{port}/v1"
    reply, frames = await turn(alice, alice_conversation, "demo")
    assert reply.status == Message.Status.ERROR
    assert reply.error.startswith(f"Could not connect to 127.0.0.1:{port} (")
    assert "Could not connect" in frames


async def test_dns_failure(alice, alice_conversation, settings):
    settings.CHAT_API_BASE = "http://no-such-model-server.invalid/v1"
    reply, _ = await turn(alice, alice_conversation, "demo")
    assert (
        reply.error
        == "Could not find the server no-such-model-server.invalid: its name does not resolve (DNS)."
    )


async def test_tls_failure(alice, alice_conversation, settings, simulator):
    settings.CHAT_API_BASE = simulator.base_url.replace("http://", "https://")  # a plain-HTTP port
    reply, _ = await turn(alice, alice_conversation, "demo")
    assert reply.status == Message.Status.ERROR
    assert reply.error.startswith("Could not make a secure (TLS) connection to 127.0.0.1:")


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose accept queue is full, so a new connection attempt is never answered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


async def test_connect_timeout(alice, alice_conversation, settings, unanswered_port):
    settings.CHAT_API_BASE = f"http://127.0.0.1:{unanswered_port}/v1"
    settings.CHAT_CONNECT_TIMEOUT = 0.3
    settings.CHAT_RETRIES = 0
    reply, _ = await turn(alice, alice_conversation, "demo")
    assert reply.error == f"Could not connect to 127.0.0.1:{unanswered_port}: the connection timed out."


# --- Time limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["slow-first-3000", "slow-headers-3000"])
async def test_no_first_token_in_time(alice, alice_conversation, upstream, settings, fault):
    settings.CHAT_FIRST_TOKEN_TIMEOUT = 0.3
    reply, _ = await turn(alice, alice_conversation, f"demo?fault={fault}")
    assert reply.status == Message.Status.ERROR
    assert reply.error == "The model did not start answering within 0.3 seconds."


async def test_a_stream_that_stalls_keeps_its_text(alice, alice_conversation, upstream, settings):
    settings.CHAT_STALL_TIMEOUT = 0.3
    reply, frames = await turn(alice, alice_conversation, "demo?tokens=10&fault=stall-after-4")
    assert reply.status == Message.Status.ERROR
    assert reply.error == "The model server stopped sending for 0.3 seconds."
    assert reply.content == expected(4)
    assert "The text above is what arrived before the error." in frames


async def test_the_overall_deadline_ends_a_slow_reply(alice, alice_conversation, upstream, settings):
    settings.CHAT_REPLY_DEADLINE = 0.5
    reply, _ = await turn(alice, alice_conversation, "demo?tokens=100&tps=20")
    assert reply.status == Message.Status.ERROR
    assert reply.error == "The reply took longer than the 0.5-second limit."
    assert 0 < len(reply.content) < len(expected(100))
    assert reply.content == expected(100)[: len(reply.content)]


# --- Errors inside the stream ---------------------------------------------------------------------


IN_STREAM = [
    ("stream-error-openai-after-3", "The model server reported an error: {openai}"),
    ("stream-error-openai-after-3+no-done", "The model server reported an error: {openai}"),
    ("stream-error-vllm-after-3", "The model server reported an error (code 500): {vllm}"),
    ("stream-error-vllm2-after-3", "The model server reported an error (code 500): {vllm2}"),
    ("stream-error-litellm-after-3", "The model server reported an error (code 500): {litellm}"),
    ("stream-error-litellm-after-3+no-done", "The model server reported an error (code 500): {litellm}"),
    ("stream-error-llamacpp-after-3", "The model server reported an error (code 500): {llamacpp}"),
    ("stream-error-string-after-3", "The model server reported an error: {string}"),
    ("event-error-after-3", "The model server reported an error: {event-error}"),
    ("error-field-after-3", "The model server reported an error: {error-field}"),
    ("error-event-after-3", "The model server reported an error (code 500): The model crashed."),
]


@pytest.mark.parametrize(("fault", "reason"), IN_STREAM, ids=[case[0] for case in IN_STREAM])
async def test_an_error_inside_the_stream_keeps_the_text_before_it(
    alice, alice_conversation, upstream, fault, reason
):
    reply, frames = await turn(alice, alice_conversation, f"demo?tokens=8&fault={fault}")
    assert reply.status == Message.Status.ERROR
    assert reply.error == reason.format(**STREAM_ERROR_MESSAGES)
    assert reply.content == expected(3)
    assert escape(reply.error) in frames


async def test_a_stream_cut_off_without_finish_or_done_keeps_its_text(alice, alice_conversation, upstream):
    reply, _ = await turn(alice, alice_conversation, "demo?tokens=8&fault=cut-off-after-5")
    assert reply.status == Message.Status.ERROR
    assert reply.error.startswith("The answer was cut off")
    assert reply.content == expected(5)


async def test_a_stream_with_a_finish_reason_but_no_done_completes(alice, alice_conversation, upstream):
    reply, _ = await turn(alice, alice_conversation, "demo?tokens=5&fault=no-done")
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == expected(5)


# --- What the stream carries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "notice"),
    [
        ("finish-length", "The answer hit the length limit."),
        ("finish-content-filter", "The answer was cut short by the provider&#x27;s content filter."),
    ],
)
async def test_a_reply_ended_by_a_limit_is_complete_with_a_notice(
    alice, alice_conversation, upstream, fault, notice
):
    reply, frames = await turn(alice, alice_conversation, f"demo?tokens=5&fault={fault}")
    assert reply.status == Message.Status.COMPLETE
    assert reply.finish_reason == fault.removeprefix("finish-").replace("-", "_")
    assert reply.content == expected(5)
    assert notice in frames


async def test_the_conversations_max_tokens_is_sent_and_the_cut_is_shown(alice, alice_conversation, upstream):
    await Conversation.objects.filter(pk=alice_conversation.pk).aupdate(max_tokens=3, temperature=0.2)
    reply, frames = await turn(alice, alice_conversation, "demo?tokens=8")
    assert (upstream.stats.last_chat_body["max_tokens"], upstream.stats.last_chat_body["temperature"]) == (
        3,
        0.2,
    )
    assert reply.status == Message.Status.COMPLETE and reply.finish_reason == "length"
    assert reply.content == expected(3)
    assert "The answer hit the length limit." in frames


async def test_a_payload_that_is_not_json_is_skipped_counted_and_logged(
    alice, alice_conversation, upstream, caplog
):
    with caplog.at_level(logging.WARNING, logger="chat"):
        reply, _ = await turn(alice, alice_conversation, "demo?tokens=6&fault=not-json-2")
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == expected(6)
    assert reply.skipped_chunks == 1
    assert any(
        reply.request_id in record.getMessage() and "not JSON" in record.getMessage()
        for record in caplog.records
    )


async def test_invalid_utf8_becomes_replacement_characters(alice, alice_conversation, upstream):
    reply, _ = await turn(alice, alice_conversation, "demo?tokens=6&fault=bad-utf8-2")
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == expected(2) + BAD_UTF8_TEXT_DECODED + expected(6)[len(expected(2)) :]
    assert "\ufffd" in reply.content


@pytest.mark.parametrize("fault", ["reasoning-5", "reasoning-field-5", "think-5"])
async def test_reasoning_is_streamed_and_stored_apart_and_never_sent_back(
    alice, alice_conversation, upstream, fault
):
    reply, frames = await turn(alice, alice_conversation, f"demo?tokens=6&fault={fault}")
    assert reply.status == Message.Status.COMPLETE
    assert reply.reasoning == reasoning_text(5)
    assert reply.content == expected(6)
    assert f'id="m-{reply.pk}-reasoning"' in frames
    assert "<summary>Thinking</summary>" in frames
    assert "&lt;think&gt;" not in frames and "<think>" not in reply.content

    await turn(alice, alice_conversation, "demo?tokens=2", text="and then?")
    sent = upstream.stats.last_chat_body["messages"]
    assert [m["content"] for m in sent if m["role"] == "assistant"] == [expected(6)]


async def test_usage_is_asked_for_and_stored(alice, alice_conversation, upstream):
    reply, _ = await turn(alice, alice_conversation, "demo?tokens=5")
    assert upstream.stats.last_chat_body["stream_options"] == {"include_usage": True}
    assert reply.completion_tokens == 5 and reply.prompt_tokens is not None
    assert reply.total_tokens == reply.prompt_tokens + 5


async def test_a_usage_chunk_with_null_choices_is_understood(alice, alice_conversation, upstream):
    reply, _ = await turn(alice, alice_conversation, "demo?tokens=5&fault=usage-null-choices")
    assert reply.status == Message.Status.COMPLETE
    assert reply.completion_tokens == 5


async def test_missing_usage_is_recorded_as_unknown(alice, alice_conversation, upstream):
    reply, frames = await turn(alice, alice_conversation, "demo?tokens=5&fault=no-usage")
    assert reply.status == Message.Status.COMPLETE
    assert (reply.prompt_tokens, reply.completion_tokens, reply.total_tokens) == (None, None, None)
    assert "usage not reported" in frames


async def test_a_server_refusing_stream_options_is_asked_again_without_and_remembers(
    alice, alice_conversation, settings
):
    with SimulatorThread(config=SimulatorConfig(tokens_per_second=0, reply_tokens=4)) as server:
        settings.CHAT_API_BASE = server.base_url
        for _ in range(2):
            reply, _ = await turn(alice, alice_conversation, "demo?fault=reject-stream-options")
            assert reply.status == Message.Status.COMPLETE
            assert reply.content == expected(4)
            assert "stream_options" not in server.stats.last_chat_body
        assert server.stats.rejected_stream_options == 1  # the second reply did not ask again


async def test_a_provider_refusing_stream_options_is_remembered_on_its_row(alice, alice_conversation):
    model = "demo?fault=reject-stream-options"
    with SimulatorThread(config=SimulatorConfig(tokens_per_second=0, reply_tokens=4)) as server:
        provider = await Provider.objects.acreate(
            name="Strict", base_url=server.base_url, all_models=False, model_ids=model
        )
        reply, _ = await turn(alice, alice_conversation, f"p{provider.pk}:{model}")
        assert reply.status == Message.Status.COMPLETE
        assert reply.provider_id == provider.pk
        assert server.stats.rejected_stream_options == 1
        await provider.arefresh_from_db()
        assert provider.stream_usage is False
        reply, _ = await turn(alice, alice_conversation, f"p{provider.pk}:{model}")
        assert reply.status == Message.Status.COMPLETE
        assert server.stats.rejected_stream_options == 1  # not asked with it again


# --- Logging ----------------------------------------------------------------------------------------


async def test_failures_are_logged_with_the_replys_request_id(alice, alice_conversation, upstream, caplog):
    with caplog.at_level(logging.INFO, logger="chat"):
        reply, _ = await turn(alice, alice_conversation, "demo?fault=status-503")
    assert reply.request_id.startswith("req_")
    logged = [record.getMessage() for record in caplog.records if reply.request_id in record.getMessage()]
    assert any("status 503" in line for line in logged)
    assert any(reply.error in line for line in logged)
    assert upstream.stats.last_headers.get("x-request-id") == reply.request_id


# --- Connections ----------------------------------------------------------------------------------


async def test_150_concurrent_streams_share_one_client_without_a_pool_timeout(settings, simulator):
    settings.CHAT_CONNECT_TIMEOUT = 1.0  # a pool wait longer than this would fail a stream
    endpoint = Endpoint(base_url=simulator.base_url)
    request = ChatRequest(model="demo?tokens=30&tps=15", messages=[{"role": "user", "content": "hi"}])

    async def one() -> str:
        return "".join([e.text async for e in stream_chat(endpoint, request) if isinstance(e, TextDelta)])

    texts = await asyncio.gather(*(one() for _ in range(150)))
    assert set(texts) == {reply_text(request.messages, 30)}


async def test_one_pooled_client_per_worker_sized_from_settings_and_closed_on_shutdown(settings):
    from chat.upstream import close_clients, get_client

    settings.CHAT_MAX_CONNECTIONS = 321
    await close_clients()
    client = get_client()
    assert get_client() is client
    pool = client._transport._pool  # httpx keeps its limits on the transport's pool
    assert pool._max_connections == 321
    assert client.timeout.read is None  # stream_chat applies its own first-token and stall limits
    await close_clients()
    assert client.is_closed
    assert get_client() is not client
    await close_clients()
