"""Chunk parsing and error wording: pure functions, no server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chat.sse import EventStreamDecoder
from chat.upstream import (
    ChatRequest,
    ConnectFailure,
    Done,
    Endpoint,
    Finish,
    ReasoningDelta,
    Skipped,
    TextDelta,
    ThinkTags,
    UpstreamError,
    Usage,
    build_payload,
    describe_status,
    parse_chunk,
    parse_data,
    retry_after_seconds,
)
from chat.upstream.client import _retry_wait

ARCEE_EXAMPLE = (
    b'data: {"choices": [{"delta": {"content": "Hello"}}]}\n'
    b'data: {"choices": [{"delta": {"content": "!"}}]}\n'
    b'data: {"choices": [{"delta": {"content": " How"}}]}\n'
    b"...\n"
    b'data: {"choices": [{"delta": {"content": " today"}}]}\n'
    b'data: {"choices": [{"delta": {"content": "?"}}]}\n'
    b"data: [DONE]"
)


def events_of(body: bytes, read_size: int) -> list:
    decoder = EventStreamDecoder()
    events = []
    for start in range(0, len(body), read_size):
        for sse in decoder.feed(body[start : start + read_size]):
            events.extend(parse_data(sse.data))
    for sse in decoder.end():
        events.extend(parse_data(sse.data))
    return events


@pytest.mark.parametrize("read_size", [1, 7, 4096])
@pytest.mark.parametrize("tail", [b"", b"\n", b"\n\n"])
def test_arcee_documented_example_reads_as_hello_how_today(read_size, tail):
    events = events_of(ARCEE_EXAMPLE + tail, read_size)
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert text == "Hello! How today?"
    assert isinstance(events[-1], Done)


def test_openai_style_stream_yields_text_finish_and_usage():
    body = (
        b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
        b'"finish_reason":null}]}\n\n'
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
        b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b'data: {"id":"c","choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert events_of(body, 5) == [TextDelta("Hi"), Finish("stop"), Usage(3, 1, 4), Done()]


def test_chunk_with_null_choices_and_no_usage_yields_nothing():
    assert parse_chunk({"choices": None}) == []
    assert parse_chunk({"choices": [{"delta": {"content": None}}]}) == []


def test_non_json_payload_is_skipped():
    assert parse_data("not json at all") == [Skipped("not json at all")]


def test_error_object_in_stream_raises_with_its_message():
    with pytest.raises(UpstreamError, match="The model crashed"):
        parse_data('{"error": {"message": "The model crashed", "code": 500}}')


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (
            401,
            b'{"error":{"message":"Incorrect API key provided."}}',
            "application/json",
            "The API key was rejected (401). Incorrect API key provided.",
        ),
        (403, b"", "text/plain", "The API key was rejected (403)."),
        (
            404,
            b'{"detail":"Not Found"}',
            "application/json",
            "The model or the API address was not found (404). Not Found",
        ),
        (
            429,
            b"slow down",
            "text/plain",
            "The model server is rate limiting requests (429). Try again shortly. slow down",
        ),
        (
            502,
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            "text/html",
            "The model server had an error (502).",
        ),
    ],
)
def test_status_errors_read_as_one_plain_sentence(status, body, content_type, expected):
    assert describe_status(status, body, content_type) == expected


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            b'{"error":{"message":"This model\'s maximum context length is 8192 tokens.",'
            b'"code":"context_length_exceeded"}}',
            "The conversation is too long for this model's context window (400). "
            "This model's maximum context length is 8192 tokens.",
        ),
        (400, b'{"detail":"bad temperature"}', "The model server refused the request (400). bad temperature"),
        (408, b"", "The model server timed out waiting for the request (408)."),
        (413, b"", "The request was too large for the model server (413)."),
        (
            422,
            b'{"detail":"messages: field required"}',
            "The model server could not process the request (422). messages: field required",
        ),
    ],
)
def test_more_statuses_each_say_what_happened(status, body, expected):
    assert describe_status(status, body, "application/json") == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "20"}, "Try again in 20 seconds."),
        ({"retry-after-ms": "1500"}, "Try again in 2 seconds."),
        ({"Retry-After": "300"}, "Try again in 5 minutes."),
        ({"Retry-After": "soon"}, "Try again shortly."),
        ({}, "Try again shortly."),
    ],
)
def test_rate_limit_says_when_to_retry(headers, expected):
    sentence = describe_status(429, b"", "text/plain", headers)
    assert sentence == f"The model server is rate limiting requests (429). {expected}"


def test_retry_after_as_an_http_date():
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds({"Retry-After": "Sun, 29 Nov 2026 12:00:42 GMT"}, now=now) == 42
    assert retry_after_seconds({"Retry-After": "Sun, 29 Nov 2026 11:00:00 GMT"}, now=now) == 0


@pytest.mark.parametrize(
    ("chunk", "reason"),
    [
        ({"error": {"message": "boom", "type": "server_error", "code": None}}, "reported an error: boom"),
        ({"error": {"message": "boom", "code": 500}}, "reported an error (code 500): boom"),
        ({"error": {"message": "boom", "code": "500"}}, "reported an error (code 500): boom"),
        ({"object": "error", "message": "boom", "type": "BadRequestError", "code": 400}, "(code 400): boom"),
        ({"error": "boom"}, "reported an error: boom"),
    ],
)
def test_errors_in_each_servers_shape(chunk, reason):
    with pytest.raises(UpstreamError) as caught:
        parse_chunk(chunk)
    assert caught.value.reason.endswith(reason)


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_reasoning_fields_are_reasoning_not_text(key):
    chunk = {"choices": [{"delta": {key: "hmm", "content": None}, "finish_reason": None}]}
    assert parse_chunk(chunk) == [ReasoningDelta("hmm")]


def test_usage_chunk_with_empty_choices():
    chunk = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    assert parse_chunk(chunk) == [Usage(3, 4, 7)]


def think(*pieces: str) -> list:
    splitter = ThinkTags()
    events = [event for piece in pieces for event in splitter.feed(piece)]
    return events + splitter.end()


def joined(events: list) -> tuple[str, str]:
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return reasoning, "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize(
    "pieces",
    [
        ["<think>a b</think>\n\nAnswer"],
        ["<thi", "nk>a", " b</th", "ink>", "\n\n", "Answer"],
        ["\n<think>", "a b", "<", "/think>Answer"],
        list("<think>a b</think>\n\nAnswer"),
    ],
)
def test_a_leading_think_block_is_reasoning_however_it_is_split(pieces):
    assert joined(think(*pieces)) == ("a b", "Answer")


def test_think_tags_later_in_the_answer_are_text():
    assert joined(think("Use ", "<think> tags")) == ("", "Use <think> tags")


def test_text_that_only_looks_like_the_start_of_a_tag_is_released():
    assert joined(think("<th", "ree")) == ("", "<three")
    assert joined(think("<thi")) == ("", "<thi")


def test_an_unclosed_think_block_stays_reasoning():
    assert joined(think("<think>still thinking</thi")) == ("still thinking</thi", "")


def test_the_request_body_sends_options_only_when_set():
    endpoint = Endpoint(
        base_url="http://x/v1", extra_fields={"top_p": 0.5, "model": "ignored", "stream": False}
    )
    plain = build_payload(endpoint, ChatRequest(model="m", messages=[]), stream_usage=False)
    assert plain == {"top_p": 0.5, "model": "m", "messages": [], "stream": True}
    full = build_payload(
        endpoint, ChatRequest(model="m", messages=[], temperature=0.0, max_tokens=5), stream_usage=True
    )
    assert full["temperature"] == 0.0 and full["max_tokens"] == 5
    assert full["stream_options"] == {"include_usage": True}


def test_the_api_key_is_never_in_an_endpoints_repr():
    assert "sk-secret" not in repr(Endpoint(base_url="http://x/v1", api_key="sk-secret"))


@pytest.mark.parametrize(
    ("error", "attempt", "wait"),
    [
        (ConnectFailure("refused"), 0, "backoff"),
        (UpstreamError("busy", status=503), 1, "backoff"),
        (UpstreamError("limited", status=429, retry_after=0.5), 0, 0.5),
        (UpstreamError("limited", status=429, retry_after=60), 0, None),  # longer than the cap
        (UpstreamError("broken", status=500), 0, None),
        (UpstreamError("bad", status=400), 0, None),
        (UpstreamError("stalled"), 0, None),
        (UpstreamError("busy", status=503), 2, None),  # out of retries
    ],
)
def test_which_failures_are_retried_and_how_long_after(settings, error, attempt, wait):
    settings.CHAT_RETRIES, settings.CHAT_RETRY_BACKOFF, settings.CHAT_RETRY_MAX_WAIT = 2, 1.0, 10.0
    result = _retry_wait(error, attempt)
    if wait == "backoff":
        assert 2**attempt <= result <= 2**attempt * 1.25
    else:
        assert result == wait


def test_fastapi_validation_errors_read_as_their_messages():
    body = (
        b'{"detail": [{"loc": ["body", "temperature"], "msg": "Input should be less than 2", "type": "x"}]}'
    )
    assert describe_status(422, body, "application/json") == (
        "The model server could not process the request (422). temperature: Input should be less than 2"
    )
