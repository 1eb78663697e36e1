"""The upstream simulator, spoken to over real loopback HTTP (no mocks).

These tests need no database; they pin down the wire behaviour the app's client and
its tests rely on, fault by fault.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import chat.simulator
from chat.simulator import (
    BAD_UTF8_BYTES,
    BAD_UTF8_TEXT_DECODED,
    FAULT_NAMES,
    NOT_JSON_DATA,
    STREAM_ERROR_MESSAGES,
    STREAM_ERROR_PAYLOADS,
    STREAM_ERROR_SHAPES,
    SimulatorConfig,
    SimulatorThread,
    hostile_tokens,
    markdown_tokens,
    reasoning_text,
    reasoning_tokens,
    reply_text,
    reply_tokens,
    start_simulator,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello there,\n  how   are you? Ça va?"},
]
TOKENS = 20


# --- helpers -------------------------------------------------------------------------------------


def sse_data(raw: bytes, errors: str = "strict") -> list[str]:
    """The ``data`` of each event, parsed the way a compliant SSE client does (any line ending)."""
    text = raw.decode("utf-8", errors=errors).replace("\r\n", "\n").replace("\r", "\n")
    events = []
    for block in text.split("\n\n"):
        lines = [line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")]
        if lines:
            events.append("\n".join(lines))
    return events


def payloads(raw: bytes) -> list[Any]:
    return [data if data == "[DONE]" else json.loads(data) for data in sse_data(raw)]


def lenient_payloads(raw: bytes) -> list[Any]:
    """Like ``payloads``, but bad UTF-8 becomes U+FFFD and data that is not JSON stays a string."""
    items: list[Any] = []
    for data in sse_data(raw, errors="replace"):
        try:
            items.append(json.loads(data))
        except ValueError:
            items.append(data)
    return items


def content_of(items: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for item in items
        if isinstance(item, dict)
        for choice in item.get("choices") or []
    )


def reasoning_of(items: list[Any], key: str) -> str:
    return "".join(
        choice["delta"].get(key) or ""
        for item in items
        if isinstance(item, dict)
        for choice in item.get("choices") or []
    )


def content_chunks(items: list[Any]) -> list[dict]:
    return [
        item
        for item in items
        if isinstance(item, dict)
        and item.get("choices")
        and isinstance(item["choices"][0]["delta"].get("content"), str)
    ]


def finish_reasons(items: list[Any]) -> list[str]:
    return [
        item["choices"][0]["finish_reason"]
        for item in items
        if isinstance(item, dict) and item.get("choices") and item["choices"][0]["finish_reason"]
    ]


async def eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def chat_body(model: str = "demo", *, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, "stream": stream, **extra}


async def stream_raw(
    client: httpx.AsyncClient, model: str = "demo", **extra: Any
) -> tuple[httpx.Response, list[bytes], Exception | None]:
    """POST a streaming request; return the response, the raw body pieces and any transport error."""
    pieces: list[bytes] = []
    error: Exception | None = None
    async with client.stream("POST", "/chat/completions", json=chat_body(model, **extra)) as response:
        try:
            async for piece in response.aiter_raw():
                pieces.append(piece)
        except httpx.TransportError as exc:
            error = exc
    return response, pieces, error


async def raw_exchange(sim: Any, body: dict[str, Any]) -> bytes:
    """POST on a raw socket with ``Connection: close``; everything the server sent, head included."""
    content = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(content), content)
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    return raw


def unique(model: str) -> str:
    """A model string no other test uses, because flaky faults count requests per model string."""
    return f"{model}&id={uuid.uuid4()}"


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    simulator = await start_simulator(config=SimulatorConfig(tokens_per_second=2000, reply_tokens=TOKENS))
    yield simulator
    await simulator.close()


@pytest.fixture
async def client(sim: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=5) as http:
        yield http


# --- the reply -----------------------------------------------------------------------------------


def test_reply_tokens_are_deterministic_and_say_what_is_happening() -> None:
    tokens = reply_tokens(MESSAGES, 80)
    assert len(tokens) == 80
    assert tokens == reply_tokens(MESSAGES, 80)
    assert tokens[:3] == ["This", " is", " the"]
    assert all(token[0].isspace() for token in tokens[1:])
    text = "".join(tokens)
    assert text == reply_text(MESSAGES, 80)
    assert text.startswith("This is the offline demo: no language model is connected")
    assert "You wrote: “Hello there, how are you? Ça va?”." in text  # whitespace collapsed
    assert "\n\n" in "".join(tokens[:60])
    assert not text.isascii()
    assert reply_tokens(MESSAGES, 0) == []
    assert reply_tokens(MESSAGES, -3) == []
    assert reply_tokens(MESSAGES, 500)[:80] == tokens  # longer replies cycle the filler


def test_reply_quotes_the_last_user_message_cut_to_60_characters() -> None:
    long = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"}]
    long.append({"role": "user", "content": "word " * 40})
    text = reply_text(long, 60)
    quoted = text.split("“", 1)[1].split("”", 1)[0]
    assert len(quoted) <= 60
    assert quoted.endswith("…")
    assert quoted.startswith("word word")


# --- endpoints -----------------------------------------------------------------------------------


async def test_models_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["demo"]
    assert body["data"][0]["object"] == "model"
    assert body["data"][0]["owned_by"] == "simulator"
    assert isinstance(body["data"][0]["created"], int)


async def test_models_can_be_hidden() -> None:
    simulator = await start_simulator(config=SimulatorConfig(list_models=False))
    async with simulator, httpx.AsyncClient(base_url=simulator.base_url) as http:
        response = await http.get("/models")
    assert response.status_code == 404
    assert "error" in response.json()


async def test_streaming_reply(sim: Any, client: httpx.AsyncClient) -> None:
    response, pieces, error = await stream_raw(client)
    assert error is None
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["transfer-encoding"] == "chunked"
    items = payloads(b"".join(pieces))
    chunks = content_chunks(items)
    assert len(chunks) == TOKENS
    assert content_of(items) == reply_text(MESSAGES, TOKENS)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "role" not in chunks[1]["choices"][0]["delta"]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "demo" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-sim-")
    assert items[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert items[-1] == "[DONE]"
    assert not any(isinstance(i, dict) and "usage" in i for i in items)
    assert sim.stats.streams_completed == 1
    assert sim.stats.last_chat_body["messages"] == MESSAGES


async def test_include_usage_adds_a_usage_chunk(client: httpx.AsyncClient) -> None:
    _, pieces, _ = await stream_raw(client, stream_options={"include_usage": True})
    items = payloads(b"".join(pieces))
    assert items[-1] == "[DONE]"
    usage_chunk = items[-2]
    assert usage_chunk["choices"] == []
    prompt = 9  # whitespace-separated words in all the messages
    assert usage_chunk["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": TOKENS,
        "total_tokens": prompt + TOKENS,
    }
    assert finish_reasons(items) == ["stop"]


async def test_non_streaming_reply(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat_body(stream=False))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-sim-")
    assert body["model"] == "demo"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": reply_text(MESSAGES, TOKENS)},
            "finish_reason": "stop",
        }
    ]
    usage = body["usage"]
    assert usage["completion_tokens"] == TOKENS
    assert usage["total_tokens"] == usage["prompt_tokens"] + TOKENS


async def test_options_in_the_model_name_and_the_body(client: httpx.AsyncClient) -> None:
    model = "demo?tokens=5&tps=5000"
    _, pieces, _ = await stream_raw(client, model)
    items = payloads(b"".join(pieces))
    assert content_of(items) == reply_text(MESSAGES, 5)
    assert {i["model"] for i in items if isinstance(i, dict)} == {model}

    _, pieces, _ = await stream_raw(client, model, simulator={"tokens": 3})
    assert content_of(payloads(b"".join(pieces))) == reply_text(MESSAGES, 3)

    response = await client.post("/chat/completions", json=chat_body("demo?tokens=x"))
    assert response.status_code == 400


async def test_tokens_are_paced(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    _, pieces, _ = await stream_raw(client, "demo?tokens=11&tps=100")
    elapsed = time.monotonic() - started
    assert content_of(payloads(b"".join(pieces))) == reply_text(MESSAGES, 11)
    assert 0.09 <= elapsed < 1.0  # ten gaps of 10 ms


async def test_slow_first_token(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    async with client.stream(
        "POST", "/chat/completions", json=chat_body("demo?fault=slow-first-200")
    ) as response:
        assert response.status_code == 200
        async for _ in response.aiter_raw():
            first = time.monotonic() - started
            break
    assert first >= 0.19


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        (401, "Incorrect API key provided.", "invalid_api_key"),
        (404, "The model `demo` does not exist.", "model_not_found"),
        (429, "Rate limit reached.", "rate_limit_exceeded"),
        (500, "The server had an error while processing your request.", None),
        (503, "The server had an error while processing your request.", None),
    ],
)
async def test_status_faults(client: httpx.AsyncClient, status: int, message: str, code: str | None) -> None:
    response = await client.post("/chat/completions", json=chat_body(f"demo?fault=status-{status}"))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["message"] == message
    assert error["code"] == code
    assert error["type"]
    assert response.headers.get("retry-after") == ("7" if status == 429 else None)


async def test_html_status_fault(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat_body("demo?fault=html-status-502"))
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == (
        "<html><head><title>502 Bad Gateway</title></head>"
        "<body><h1>502 Bad Gateway</h1><script>alert(1)</script></body></html>"
    )


async def test_not_sse_fault(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat_body("demo?fault=not-sse"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


async def test_cut_off_leaves_exactly_n_tokens_and_no_done(sim: Any, client: httpx.AsyncClient) -> None:
    _, pieces, error = await stream_raw(client, "demo?fault=cut-off-after-3")
    assert isinstance(error, httpx.RemoteProtocolError)
    items = payloads(b"".join(pieces))
    assert len(content_chunks(items)) == 3
    assert content_of(items) == reply_text(MESSAGES, 3)
    assert "[DONE]" not in items
    assert finish_reasons(items) == []
    assert sim.stats.streams_completed == 1


async def test_stall_keeps_the_connection_open(sim: Any) -> None:
    timeout = httpx.Timeout(5.0, read=0.3)
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=timeout) as http:
        pieces: list[bytes] = []
        with pytest.raises(httpx.ReadTimeout):
            async with http.stream(
                "POST", "/chat/completions", json=chat_body("demo?fault=stall-after-2")
            ) as r:
                async for piece in r.aiter_raw():
                    pieces.append(piece)
    items = payloads(b"".join(pieces))
    assert content_of(items) == reply_text(MESSAGES, 2)
    assert "[DONE]" not in items
    await eventually(lambda: sim.stats.streams_aborted == 1)


async def test_stalled_stream_ends_when_the_server_closes() -> None:
    simulator = await start_simulator(config=SimulatorConfig(fault="stall-after-1"))
    async with (
        httpx.AsyncClient(base_url=simulator.base_url, timeout=5) as http,
        http.stream("POST", "/chat/completions", json=chat_body()) as response,
    ):
        stream = response.aiter_raw()
        await anext(stream)
        await asyncio.wait_for(simulator.close(), 2)
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in stream:
                pass


async def test_error_event_fault(client: httpx.AsyncClient) -> None:
    _, pieces, error = await stream_raw(client, "demo?fault=error-event-after-2")
    assert error is None
    items = payloads(b"".join(pieces))
    assert content_of(items) == reply_text(MESSAGES, 2)
    assert items[-2] == {"error": {"message": "The model crashed.", "type": "server_error", "code": 500}}
    assert items[-1] == "[DONE]"
    assert finish_reasons(items) == []


async def test_no_done_fault(client: httpx.AsyncClient) -> None:
    _, pieces, error = await stream_raw(client, "demo?fault=no-done")
    assert error is None
    items = payloads(b"".join(pieces))
    assert content_of(items) == reply_text(MESSAGES, TOKENS)
    assert finish_reasons(items) == ["stop"]
    assert "[DONE]" not in items


@pytest.mark.parametrize("fault", ["split-bytes", "split-bytes+crlf"])
async def test_split_bytes_still_decodes_to_the_same_text(client: httpx.AsyncClient, fault: str) -> None:
    _, pieces, error = await stream_raw(client, f"demo?fault={fault}")
    assert error is None
    assert max(len(piece) for piece in pieces) <= 3
    undecodable = 0
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable > 0  # multi-byte characters really were split
    raw = b"".join(pieces)
    if "crlf" in fault:
        assert any(a.endswith(b"\r") and b.startswith(b"\n") for a, b in itertools.pairwise(pieces))
        assert raw.count(b"\n") == raw.count(b"\r\n")
    items = payloads(raw)
    assert content_of(items) == reply_text(MESSAGES, TOKENS)
    assert items[-1] == "[DONE]"


@pytest.mark.parametrize(("fault", "newline"), [("crlf", b"\r\n"), ("cr", b"\r")])
async def test_line_ending_faults(client: httpx.AsyncClient, fault: str, newline: bytes) -> None:
    _, pieces, _ = await stream_raw(client, f"demo?fault={fault}")
    raw = b"".join(pieces)
    assert raw.startswith(b"data: ")
    assert raw.endswith(b"data: [DONE]" + newline + newline)
    assert b"\n" not in raw.replace(b"\r\n", b"") if fault == "crlf" else b"\n" not in raw
    assert raw.count(newline + newline) == len(sse_data(raw))
    assert content_of(payloads(raw)) == reply_text(MESSAGES, TOKENS)


async def test_comments_fault(client: httpx.AsyncClient) -> None:
    _, pieces, _ = await stream_raw(client, "demo?fault=comments")
    raw = b"".join(pieces)
    for noise in (b": keep-alive", b"\nid: ", b"\nevent: message", b"retry: "):
        assert noise in raw
    items = payloads(raw)
    assert content_of(items) == reply_text(MESSAGES, TOKENS)
    assert items[-1] == "[DONE]"


async def test_faults_set_in_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat_body(simulator={"fault": "status-429"}))
    assert response.status_code == 429


async def test_unknown_fault_is_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat_body("demo?fault=crlf+melt"))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "'melt'" in message
    assert "cut-off-after-<n>" in message


async def test_unknown_server_fault_fails_at_start() -> None:
    with pytest.raises(ValueError, match="melt"):
        await start_simulator(config=SimulatorConfig(fault="melt"))


def test_every_fault_is_listed_in_the_module_docstring() -> None:
    doc = chat.simulator.__doc__ or ""
    missing = [name for name in FAULT_NAMES if f"``{name}``" not in doc]
    assert missing == []


@pytest.mark.parametrize(
    "fault",
    [
        "stream-error-xml-after-1",
        "stream-error-openai-after-x",
        "flaky-418-1",
        "flaky-drop",
        "flaky-drop-x",
        "detail-status-200",
        "text-status-600",
        "reasoning-2000000",
        "think-",
        "not-json",
        "bad-utf8-",
        "slow-headers",
        "finish-stop",
        "status-500-context",
    ],
)
async def test_malformed_new_faults_are_rejected(client: httpx.AsyncClient, fault: str) -> None:
    response = await client.post("/chat/completions", json=chat_body(f"demo?fault={fault}"))
    assert response.status_code == 400
    assert fault in response.json()["error"]["message"]


# --- reasoning -----------------------------------------------------------------------------------


def test_reasoning_tokens_are_deterministic() -> None:
    tokens = reasoning_tokens(120)
    assert len(tokens) == 120
    assert tokens == reasoning_tokens(120)
    assert tokens[:3] == ["Let", " me", " think"]
    assert all(token[0].isspace() for token in tokens[1:])  # a second round starts with a space too
    assert reasoning_text(120) == "".join(tokens)
    assert reasoning_text(5) == "Let me think about this."
    assert not reasoning_text(120).isascii()
    assert reasoning_tokens(0) == []
    assert reasoning_text(-1) == ""


async def test_reasoning_content_comes_before_the_reply(sim: Any, client: httpx.AsyncClient) -> None:
    _, pieces, error = await stream_raw(client, "demo?fault=reasoning-5")
    assert error is None
    items = payloads(b"".join(pieces))
    deltas = [item["choices"][0]["delta"] for item in items if isinstance(item, dict) and item["choices"]]
    assert deltas[0] == {"role": "assistant", "content": None, "reasoning_content": "Let"}
    assert deltas[1] == {"content": None, "reasoning_content": " me"}
    assert all(d["content"] is None for d in deltas[:5])
    assert deltas[5] == {"content": reply_tokens(MESSAGES, 1)[0]}  # the role was announced already
    assert reasoning_of(items, "reasoning_content") == reasoning_text(5)
    assert content_of(items) == reply_text(MESSAGES, TOKENS)
    assert finish_reasons(items) == ["stop"]
    assert items[-1] == "[DONE]"
    assert sim.stats.streams_completed == 1


async def test_reasoning_field_puts_it_in_delta_reasoning(client: httpx.AsyncClient) -> None:
    _, pieces, _ = await stream_raw(client, "demo?fault=reasoning-field-3")
    items = payloads(b"".join(pieces))
    deltas = [item["choices"][0]["delta"] for item in items if isinstance(item, dict) and item["choices"]]
    assert deltas[:3] == [
        {"role": "assistant", "reasoning": "Let"},
        {"reasoning": " me"},
        {"reasoning": " think"},
    ]
    assert reasoning_of(items, "reasoning") == reasoning_text(3)
    assert reasoning_of(items, "reasoning_content") == ""
    assert content_of(items) == reply_text(MESSAGES, TOKENS)


async def test_think_tags_are_split_across_chunks(client: httpx.AsyncClient) -> None:
    _, pieces, _ = await stream_raw(client, "demo?fault=think-4")
    items = payloads(b"".join(pieces))
    texts = [chunk["choices"][0]["delta"]["content"] for chunk in content_chunks(items)]
    thought = reasoning_tokens(4)
    assert texts == [
        "<thi",
        "nk>" + thought[0],
        thought[1],
        thought[2],
        thought[3] + "</th",
        "ink>\n\n",
        *reply_tokens(MESSAGES, TOKENS),
    ]
    assert content_of(items) == f"<think>{reasoning_text(4)}</think>\n\n{reply_text(MESSAGES, TOKENS)}"
    assert content_chunks(items)[0]["choices"][0]["delta"]["role"] == "assistant"


async def test_an_empty_think_block_still_splits_its_tags(client: httpx.AsyncClient) -> None:
    _, pieces, _ = await stream_raw(client, "demo?tokens=1&fault=think-0")
    texts = [chunk["choices"][0]["delta"]["content"] for chunk in content_chunks(payloads(b"".join(pieces)))]
    assert texts == ["<thi", "nk></th", "ink>\n\n", reply_text(MESSAGES, 1)]


@pytest.mark.parametrize(
    ("fault", "thinking_chunks"), [("reasoning-3", 3), ("reasoning-field-3", 3), ("think-3", 5)]
)
async def test_cut_off_counts_only_content_tokens(
    client: httpx.AsyncClient, fault: str, thinking_chunks: int
) -> None:
    _, pieces, error = await stream_raw(client, f"demo?fault={fault}+cut-off-after-2")
    assert isinstance(error, httpx.RemoteProtocolError)
    items = payloads(b"".join(pieces))
    assert len(items) == thinking_chunks + 2
    assert content_of(items).endswith(reply_text(MESSAGES, 2))
    assert "[DONE]" not in items


async def test_reasoning_tokens_are_paced_like_content(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    _, pieces, _ = await stream_raw(client, "demo?tokens=2&tps=50&fault=reasoning-8")
    elapsed = time.monotonic() - started
    assert reasoning_of(payloads(b"".join(pieces)), "reasoning_content") == reasoning_text(8)
    assert 0.17 <= elapsed < 1.0  # ten chunks, nine gaps of 20 ms


async def test_reasoning_in_a_whole_response(client: httpx.AsyncClient) -> None:
    plain = await client.post("/chat/completions", json=chat_body("demo?fault=reasoning-4", stream=False))
    body = plain.json()
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": reply_text(MESSAGES, TOKENS),
        "reasoning_content": reasoning_text(4),
    }
    assert body["usage"]["completion_tokens"] == TOKENS + 4
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}
    think = await client.post("/chat/completions", json=chat_body("demo?fault=think-2", stream=False))
    content = think.json()["choices"][0]["message"]["content"]
    assert content == f"<think>{reasoning_text(2)}</think>\n\n{reply_text(MESSAGES, TOKENS)}"


# --- finish reasons and usage --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason"), [("finish-length", "length"), ("finish-content-filter", "content_filter")]
)
async def test_finish_reason_faults(client: httpx.AsyncClient, fault: str, reason: str) -> None:
    _, pieces, _ = await stream_raw(client, f"demo?fault={fault}", stream_options={"include_usage": True})
    items = payloads(b"".join(pieces))
    assert items[-3]["choices"] == [{"index": 0, "delta": {}, "finish_reason": reason}]
    assert items[-2]["usage"]["completion_tokens"] == TOKENS
    assert items[-1] == "[DONE]"
    assert content_of(items) == reply_text(MESSAGES, TOKENS)
    whole = await client.post("/chat/completions", json=chat_body(f"demo?fault={fault}", stream=False))
    assert whole.json()["choices"][0]["finish_reason"] == reason


async def test_no_usage_ignores_include_usage(client: httpx.AsyncClient) -> None:
    _, pieces, _ = await stream_raw(client, "demo?fault=no-usage", stream_options={"include_usage": True})
    items = payloads(b"".join(pieces))
    assert not any(isinstance(item, dict) and "usage" in item for item in items)
    assert finish_reasons(items) == ["stop"]
    assert items[-1] == "[DONE]"
    whole = await client.post("/chat/completions", json=chat_body("demo?fault=no-usage", stream=False))
    assert "usage" not in whole.json()


async def test_usage_chunk_with_null_choices(client: httpx.AsyncClient) -> None:
    model = "demo?fault=usage-null-choices"
    _, pieces, _ = await stream_raw(client, model, stream_options={"include_usage": True})
    raw = b"".join(pieces)
    assert b'"choices":null,"usage":{' in raw
    items = payloads(raw)
    assert items[-2]["choices"] is None
    assert items[-2]["usage"]["completion_tokens"] == TOKENS
    assert items[-1] == "[DONE]"


async def test_reject_stream_options(sim: Any, client: httpx.AsyncClient) -> None:
    model = "demo?fault=reject-stream-options"
    rejected = await client.post(
        "/chat/completions", json=chat_body(model, stream_options={"include_usage": True})
    )
    assert rejected.status_code == 400
    assert rejected.headers["content-type"] == "application/json"
    assert rejected.json() == {
        "error": {
            "message": "Unrecognized request argument supplied: stream_options",
            "type": "invalid_request_error",
            "param": "stream_options",
            "code": None,
        }
    }
    assert sim.stats.rejected_stream_options == 1
    response, pieces, error = await stream_raw(client, model)
    assert response.status_code == 200
    assert error is None
    assert content_of(payloads(b"".join(pieces))) == reply_text(MESSAGES, TOKENS)
    assert sim.stats.rejected_stream_options == 1
    assert sim.stats.streams_completed == 1


# --- bad payloads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "after"), [("demo?fault=not-json-3", 3), ("demo?tokens=2&fault=not-json-9", 2)]
)
async def test_not_json_event_then_the_rest(client: httpx.AsyncClient, model: str, after: int) -> None:
    _, pieces, error = await stream_raw(client, model)
    assert error is None
    raw = b"".join(pieces)
    assert b'\n\ndata: {"choices": [{"delta": {"content": "unterminated\n\ndata: {' in raw
    items = lenient_payloads(raw)
    assert items.index(NOT_JSON_DATA) == after  # after the n-th content chunk
    assert [item for item in items if isinstance(item, str)] == [NOT_JSON_DATA, "[DONE]"]
    tokens = int(model.partition("tokens=")[2].partition("&")[0] or TOKENS)
    assert content_of(items) == reply_text(MESSAGES, tokens)
    assert finish_reasons(items) == ["stop"]


async def test_bad_utf8_chunk_then_the_rest(client: httpx.AsyncClient) -> None:
    _, pieces, error = await stream_raw(client, "demo?fault=bad-utf8-2")
    assert error is None
    raw = b"".join(pieces)
    assert b'"delta":{"content":"ok\xff\xfe!"},"finish_reason":null}]}\n\n' in raw
    assert BAD_UTF8_BYTES == b"ok\xff\xfe!"
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    items = lenient_payloads(raw)
    chunks = content_chunks(items)
    assert chunks[2]["choices"][0]["delta"] == {"content": "ok\ufffd\ufffd!"}
    assert BAD_UTF8_TEXT_DECODED == "ok\ufffd\ufffd!"
    expected = reply_tokens(MESSAGES, TOKENS)
    assert content_of(items) == "".join(expected[:2]) + BAD_UTF8_TEXT_DECODED + "".join(expected[2:])
    assert items[-1] == "[DONE]"


async def test_bad_utf8_as_the_first_chunk_announces_the_role(client: httpx.AsyncClient) -> None:
    _, pieces, _ = await stream_raw(client, "demo?tokens=2&fault=bad-utf8-0")
    chunks = content_chunks(lenient_payloads(b"".join(pieces)))
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": BAD_UTF8_TEXT_DECODED},
        *({"content": token} for token in reply_tokens(MESSAGES, 2)),
    ]


@pytest.mark.parametrize(
    ("fault", "escapes", "decoded"),
    [
        ("nul-2", [rb'"NUL:\u0000."'], ["NUL:\x00."]),
        ("surrogate-2", [rb'"cut:\ud83d."'], ["cut:\ud83d."]),
        ("split-surrogate-2", [rb'"emoji:\ud83d"', rb'"\ude00."'], ["emoji:\ud83d", "\ude00."]),
    ],
)
async def test_unstorable_text_faults_write_json_escapes(
    client: httpx.AsyncClient, fault: str, escapes: list[bytes], decoded: list[str]
) -> None:
    _, pieces, error = await stream_raw(client, f"demo?fault={fault}")
    assert error is None
    raw = b"".join(pieces)
    raw.decode("utf-8")  # the wire is valid UTF-8: only the JSON escapes carry what databases refuse
    for escape in escapes:
        assert escape in raw
    items = payloads(raw)
    expected = reply_tokens(MESSAGES, TOKENS)
    assert content_of(items) == "".join(expected[:2]) + "".join(decoded) + "".join(expected[2:])
    assert items[-1] == "[DONE]"


async def test_given_chunks_are_the_whole_stream(client: httpx.AsyncClient) -> None:
    chunks = ["a\x00", "\udead", {"choices": [{"index": 0, "delta": {}, "finish_reason": "odd"}]}]
    _, pieces, error = await stream_raw(client, "demo", simulator={"chunks": json.dumps(chunks)})
    assert error is None
    items = payloads(b"".join(pieces))
    assert content_of(items) == "a\x00\udead"
    assert finish_reasons(items) == ["odd"]  # none of the simulator's own, and no usage
    assert items[-1] == "[DONE]" and not any(isinstance(i, dict) and "usage" in i for i in items)


@pytest.mark.parametrize("chunks", ["not json", json.dumps({"a": 1}), json.dumps([1, 2]), 7])
async def test_chunks_that_are_not_a_list_of_strings_and_objects_are_refused(
    client: httpx.AsyncClient, chunks: object
) -> None:
    response = await client.post("/chat/completions", json=chat_body(simulator={"chunks": chunks}))
    assert response.status_code == 400
    assert "'chunks'" in response.json()["error"]["message"]


# --- errors inside the stream --------------------------------------------------------------------


STREAM_ERROR_LINES = {
    "openai": b'data: {"error": {"message": "The server had an error while processing your request.", '
    b'"type": "server_error", "param": null, "code": null}}',
    "vllm": b'data: {"object": "error", "message": "The model crashed while generating.", '
    b'"type": "InternalServerError", "param": null, "code": 500}',
    "vllm2": b'data: {"error": {"object": "error", "message": "The model crashed while generating.", '
    b'"type": "InternalServerError", "param": null, "code": 500}}',
    "litellm": b'data: {"error": {"message": "litellm.APIConnectionError: Connection reset by peer", '
    b'"type": null, "param": null, "code": "500"}}',
    "llamacpp": b'data: {"error": {"code": 500, "message": "Context size has been exceeded.", '
    b'"type": "server_error"}}',
    "string": b'data: {"error": "Upstream overloaded"}',
}


@pytest.mark.parametrize("shape", STREAM_ERROR_SHAPES)
async def test_stream_error_shapes(sim: Any, client: httpx.AsyncClient, shape: str) -> None:
    _, pieces, error = await stream_raw(client, f"demo?fault=stream-error-{shape}-after-2")
    assert error is None
    raw = b"".join(pieces)
    assert raw.endswith(b"}\n\n" + STREAM_ERROR_LINES[shape] + b"\n\ndata: [DONE]\n\n")
    items = payloads(raw)
    assert items[-2] == STREAM_ERROR_PAYLOADS[shape]
    assert STREAM_ERROR_MESSAGES[shape] in json.dumps(items[-2])
    assert content_of(items) == reply_text(MESSAGES, 2)
    assert finish_reasons(items) == []
    assert sim.stats.streams_completed == 1


async def test_stream_error_without_done(client: httpx.AsyncClient) -> None:
    _, pieces, error = await stream_raw(client, "demo?fault=stream-error-string-after-1+no-done")
    assert error is None
    assert b"".join(pieces).endswith(b"}\n\n" + STREAM_ERROR_LINES["string"] + b"\n\n")


async def test_event_error(client: httpx.AsyncClient) -> None:
    _, pieces, error = await stream_raw(client, "demo?fault=event-error-after-1")
    assert error is None
    raw = b"".join(pieces)
    assert raw.endswith(
        b'}\n\nevent: error\ndata: {"message": "Model overloaded, try later"}\n\ndata: [DONE]\n\n'
    )
    assert STREAM_ERROR_MESSAGES["event-error"] == "Model overloaded, try later"
    assert content_of(payloads(raw)) == reply_text(MESSAGES, 1)


@pytest.mark.parametrize(("fault", "ending"), [("", b"data: [DONE]\n\n"), ("+no-done", b"")])
async def test_error_field(client: httpx.AsyncClient, fault: str, ending: bytes) -> None:
    _, pieces, error = await stream_raw(client, f"demo?fault=error-field-after-3{fault}")
    assert error is None
    raw = b"".join(pieces)
    assert raw.endswith(b"}\n\nerror: Model overloaded\n\n" + ending)
    assert STREAM_ERROR_MESSAGES["error-field"] == "Model overloaded"
    items = payloads(raw)  # a compliant SSE client ignores the unknown field
    assert content_of(items) == reply_text(MESSAGES, 3)
    assert finish_reasons(items) == []


async def test_stream_error_in_a_whole_response_is_a_500(client: httpx.AsyncClient) -> None:
    model = "demo?fault=stream-error-llamacpp-after-2"
    response = await client.post("/chat/completions", json=chat_body(model, stream=False))
    assert response.status_code == 500
    assert response.json()["error"]["message"] == STREAM_ERROR_MESSAGES["llamacpp"]


# --- flaky upstreams and retry hints -------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_flaky_status_fails_the_first_n_requests(client: httpx.AsyncClient, status: int) -> None:
    model = unique(f"demo?fault=flaky-{status}-2")
    first = await client.post("/chat/completions", json=chat_body(model))
    second = await client.post("/chat/completions", json=chat_body(model))
    other = await client.post("/chat/completions", json=chat_body(unique(f"demo?fault=flaky-{status}-2")))
    third = await client.post("/chat/completions", json=chat_body(model))
    assert [first.status_code, second.status_code, other.status_code] == [status] * 3
    assert first.json()["error"]["type"]
    assert first.headers.get("retry-after") == ("7" if status == 429 else None)
    assert third.status_code == 200
    assert third.headers["content-type"] == "text/event-stream"
    assert content_of(payloads(third.content)) == reply_text(MESSAGES, TOKENS)


async def test_flaky_drop_closes_without_an_answer(sim: Any) -> None:
    model = unique("demo?fault=flaky-drop-2")
    assert await raw_exchange(sim, chat_body(model)) == b""
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=5) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/chat/completions", json=chat_body(model))
        response = await http.post("/chat/completions", json=chat_body(model))
    assert response.status_code == 200
    assert content_of(payloads(response.content)) == reply_text(MESSAGES, TOKENS)


async def test_flaky_drop_then_status_then_success(client: httpx.AsyncClient) -> None:
    model = unique("demo?fault=flaky-drop-1+flaky-503-2")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/chat/completions", json=chat_body(model))
    statuses = [(await client.post("/chat/completions", json=chat_body(model))).status_code for _ in range(2)]
    assert statuses == [503, 200]


@pytest.mark.parametrize(
    ("fault", "options", "retry_after", "retry_after_ms"),
    [
        ("status-429", "&retry_after=30", "30", None),
        ("status-429", "&retry_after_ms=1500", None, "1500"),
        ("status-429", "&retry_after=2&retry_after_ms=1500", "2", "1500"),
        ("status-503", "", None, None),
        ("status-503", "&retry_after=Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("status-503", "&retry_after_ms=250", None, "250"),
        ("status-500", "&retry_after=30&retry_after_ms=250", None, None),
        ("flaky-429-1", "&retry_after_ms=100", None, "100"),
        ("flaky-503-1", "&retry_after=1", "1", None),
    ],
)
async def test_retry_hints(
    sim: Any, fault: str, options: str, retry_after: str | None, retry_after_ms: str | None
) -> None:
    raw = await raw_exchange(sim, chat_body(unique(f"demo?fault={fault}{options}")))
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {name: value for name, _, value in (line.partition(": ") for line in head[1:])}
    assert head[0].startswith(f"HTTP/1.1 {fault.split('-')[1]} ")
    assert headers.get("Retry-After") == retry_after
    assert headers.get("retry-after-ms") == retry_after_ms  # sent in lower case, as OpenAI does


@pytest.mark.parametrize("simulator", [{"retry_after": "1\r\nX-Injected: 1"}, {"retry_after_ms": True}])
async def test_bad_retry_hints_are_rejected(client: httpx.AsyncClient, simulator: dict[str, Any]) -> None:
    body = chat_body("demo?fault=status-429", simulator=simulator)
    response = await client.post("/chat/completions", json=body)
    assert response.status_code == 400
    assert "retry_after" in response.json()["error"]["message"]


# --- other servers' error answers ----------------------------------------------------------------


async def test_context_length_status(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat_body("demo?fault=status-400-context"))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": "This model's maximum context length is 8192 tokens. However, your messages resulted "
            "in 9001 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (503, "Model is loading, please retry."),
        (500, "Model is loading, please retry."),
        (422, "Invalid model parameters."),
    ],
)
async def test_detail_status(client: httpx.AsyncClient, status: int, detail: str) -> None:
    response = await client.post("/chat/completions", json=chat_body(f"demo?fault=detail-status-{status}"))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": detail}


async def test_text_status(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat_body("demo?fault=text-status-503"))
    assert response.status_code == 503
    assert response.headers["content-type"] == "text/plain"
    assert response.text == (
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    )


# --- slow headers --------------------------------------------------------------------------------


async def test_slow_headers_sends_nothing_until_then(sim: Any) -> None:
    content = json.dumps(chat_body("demo?fault=slow-headers-250")).encode()
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    started = time.monotonic()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(content), content)
    )
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.15)
    raw = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    assert time.monotonic() - started >= 0.24
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"data: [DONE]" in raw


async def test_slow_headers_also_delays_an_error_status(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await client.post(
        "/chat/completions", json=chat_body("demo?fault=slow-headers-200+status-503")
    )
    assert time.monotonic() - started >= 0.19
    assert response.status_code == 503


async def test_client_leaving_during_slow_headers_frees_the_connection(sim: Any) -> None:
    content = json.dumps(chat_body("demo?fault=slow-headers-60000")).encode()
    _, writer = await asyncio.open_connection(sim.host, sim.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(content), content)
    )
    await writer.drain()
    await eventually(lambda: sim.stats.chat_requests == 1)
    writer.close()
    await eventually(lambda: not sim._handlers)  # no public counter for a connection's end
    assert sim.stats.streams_started == 0


# --- HTTP behaviour ------------------------------------------------------------------------------


async def test_api_key() -> None:
    async with (
        await start_simulator(config=SimulatorConfig(api_key="sk-test", tokens_per_second=0)) as simulator,
        httpx.AsyncClient(base_url=simulator.base_url) as http,
    ):
        missing = await http.get("/models")
        wrong = await http.get("/models", headers={"Authorization": "Bearer nope"})
        right = await http.post(
            "/chat/completions", json=chat_body(stream=False), headers={"Authorization": "Bearer sk-test"}
        )
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "Incorrect API key provided."
    assert right.status_code == 200


async def test_keep_alive_reuses_the_connection(sim: Any, client: httpx.AsyncClient) -> None:
    await stream_raw(client)
    response = await client.post("/chat/completions", json=chat_body(stream=False))
    assert response.status_code == 200
    await client.get("/models")
    assert sim.stats.requests == 3
    assert sim.stats.connections == 1


async def test_connection_close_is_honoured(sim: Any, client: httpx.AsyncClient) -> None:
    for _ in range(2):
        response = await client.get("/models", headers={"Connection": "close"})
        assert response.headers["connection"] == "close"
    assert sim.stats.connections == 2


async def test_pipelined_requests_on_a_raw_socket(sim: Any) -> None:
    body = json.dumps(chat_body("demo?tokens=2", stream=False)).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    writer.write(request + request.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1))
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 2)  # the server closes after the second answer
    writer.close()
    assert raw.count(b"HTTP/1.1 200 OK") == 2
    assert sim.stats.requests == 2


async def test_client_disconnect_mid_stream_is_counted_as_aborted(sim: Any) -> None:
    async with (
        httpx.AsyncClient(base_url=sim.base_url, timeout=5) as http,
        http.stream("POST", "/chat/completions", json=chat_body("demo?tps=50&tokens=500")) as response,
    ):
        async for _ in response.aiter_raw():
            break
    await eventually(lambda: sim.stats.streams_aborted == 1)
    assert sim.stats.streams_completed == 0
    assert sim.stats.active_streams == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "parse the JSON"),
        (b"[]", "JSON object"),
        (b'{"model": "demo"}', "messages"),
        (b'{"model": "demo", "messages": []}', "messages"),
    ],
)
async def test_invalid_requests_get_400(client: httpx.AsyncClient, body: bytes, message: str) -> None:
    response = await client.post(
        "/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] is None


async def test_unknown_path_and_wrong_method(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404
    assert "error" in missing.json()
    wrong = await client.get("/chat/completions")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"HELLO WORLD\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", 400),  # a TLS hello
        (b"GET /v1/models HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET /v1/models HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    ],
)
async def test_bad_input_gets_an_error_and_a_closed_connection(sim: Any, data: bytes, status: int) -> None:
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    writer.write(data)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 2)  # returns at EOF: the server closed
    writer.close()
    assert raw.startswith(b"HTTP/1.1 %d " % status)
    # The server is still fine.
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        assert (await http.get("/models")).status_code == 200


async def test_many_concurrent_streams(sim: Any) -> None:
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10, limits=limits) as http:

        async def one() -> str:
            async with http.stream(
                "POST", "/chat/completions", json=chat_body("demo?tokens=10&tps=200")
            ) as r:
                return content_of(payloads(await r.aread()))

        results = await asyncio.gather(*(one() for _ in range(200)))
    assert set(results) == {reply_text(MESSAGES, 10)}
    assert sim.stats.streams_completed == 200
    assert sim.stats.connections == 200


# --- sync callers and the management command -----------------------------------------------------


def test_simulator_thread_for_sync_callers() -> None:
    with SimulatorThread(config=SimulatorConfig(tokens_per_second=0, reply_tokens=7)) as simulator:
        assert simulator.base_url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=simulator.base_url, timeout=5) as http:
            response = http.post("/chat/completions", json=chat_body(stream=False))
            with http.stream("POST", "/chat/completions", json=chat_body()) as streamed:
                raw = streamed.read()
        assert response.json()["choices"][0]["message"]["content"] == reply_text(MESSAGES, 7)
        assert content_of(payloads(raw)) == reply_text(MESSAGES, 7)
        assert simulator.stats.requests == 2
    with pytest.raises(httpx.ConnectError), httpx.Client(base_url=simulator.base_url, timeout=1) as http:
        http.get("/models")


def test_management_command_serves_until_sigterm() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings"}
    command = [sys.executable, "manage.py", "simulate_upstream", "--port", "0", "--tokens-per-second", "0"]
    with subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            ready, _, _ = select.select([process.stdout], [], [], 15)
            assert ready, "the command printed nothing"
            line = process.stdout.readline().strip()
            prefix = "Simulator listening on "
            assert line.startswith(prefix), line
            base_url = line.removeprefix(prefix)
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
            with httpx.Client(base_url=base_url, timeout=5) as http:
                assert http.get("/models").json()["data"][0]["id"] == "demo"
                with http.stream("POST", "/chat/completions", json=chat_body("demo?tokens=4")) as streamed:
                    assert content_of(payloads(streamed.read())) == reply_text(MESSAGES, 4)
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
            assert process.stdout.read() == ""
            assert process.stderr.read() == ""
        finally:
            if process.poll() is None:
                process.kill()


async def test_markdown_style_streams_the_markdown_passage(client: httpx.AsyncClient) -> None:
    _, pieces, error = await stream_raw(client, "demo?tokens=150&style=markdown")
    assert error is None
    content = content_of(payloads(b"".join(pieces)))
    assert content == "".join(markdown_tokens(150))
    assert content.startswith("## What the simulator can show\n\nThis reply is **Markdown**")
    assert "```python\n" in content and "| Model | Tokens/s | Note |\n" in content
    assert "\n\n## What the simulator can show" in content  # the passage repeats, blocks intact


async def test_an_unknown_style_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat_body("demo?style=poetry"))
    assert response.status_code == 400
    assert "'style'" in response.json()["error"]["message"]


async def test_hostile_style_streams_markup_that_attacks_the_page(client: httpx.AsyncClient) -> None:
    _, pieces, _ = await stream_raw(client, "demo?tokens=200&style=hostile")
    content = content_of(payloads(b"".join(pieces)))
    assert content == "".join(hostile_tokens(200))
    for attack in ("<script>", "onerror=", "javascript:", 'hx-get="/admin/"', 'id="m-1-body"', "<svg"):
        assert attack in content
