"""The simulator's server: its connections, the two routes, and the chat completions it streams."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import time
from typing import Any

from chat.simulator.events import _Events, _reply_events, _stream_error_event
from chat.simulator.fault_answers import (
    _PORTAL_PAGE,
    _STREAM_OPTIONS_REJECTED,
    _answer_error,
    _retry_status_error,
)
from chat.simulator.plan import STREAM_ERROR_MESSAGES, SimulatorConfig, _Plan, _plan_for
from chat.simulator.replies import (
    _prompt_tokens,
    hostile_tokens,
    markdown_tokens,
    reasoning_text,
    reply_tokens,
)
from chat.simulator.stats import SimulatorStats
from chat.simulator.wire import (
    _Connection,
    _error_body,
    _head,
    _HttpError,
    _json,
    _openai_error,
    _Request,
    _Wire,
)

logger = logging.getLogger("chat.simulator")  # the name it logged under as a single module

# Sleeps longer than this also watch for the client leaving, so a slow stream stops promptly.
_WATCHED_SLEEP = 0.25
_MODEL_CREATED = 1_700_000_000


class Simulator:
    """A running simulator; get one from ``start_simulator`` and ``await close()`` it."""

    def __init__(self, host: str, config: SimulatorConfig) -> None:
        self.host = host
        self.port = 0
        self.config = config
        self.stats = SimulatorStats()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._flaky_attempts: dict[str, int] = {}  # model string -> requests seen with a flaky-* fault
        self._closed = False

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def _start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every open connection, stalled streams included."""
        if self._closed or self._server is None:
            return
        self._closed = True
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        self._server.abort_clients()
        await self._server.wait_closed()

    async def __aenter__(self) -> Simulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connection loop --

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.stats.connections += 1
        conn = _Connection(reader, writer)
        try:
            while True:
                try:
                    request = await conn.read_request()
                except _HttpError as error:
                    self.stats.requests += 1
                    await self._send_error(writer, error, keep_alive=False)
                    break
                if request is None:
                    break
                self.stats.requests += 1
                if not await self._respond(conn, request):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:
            logger.exception("Simulator failed while answering a request")
        finally:
            if task is not None:
                self._handlers.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        content_type: str,
        body: bytes,
        *,
        keep_alive: bool,
        **extra: str,
    ) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        headers.update(extra)
        headers["Connection"] = "keep-alive" if keep_alive else "close"
        writer.write(_head(status, headers) + body)
        await writer.drain()

    async def _send_error(self, writer: asyncio.StreamWriter, error: _HttpError, *, keep_alive: bool) -> None:
        body = (
            error.body if error.body is not None else _error_body(error.message, error.error_type, error.code)
        )
        await self._send(
            writer,
            error.status,
            error.content_type,
            body,
            keep_alive=keep_alive and not error.close,
            **error.headers,
        )

    async def _respond(self, conn: _Connection, request: _Request) -> bool:
        """Answer one request; True to keep the connection for another."""
        keep_alive = request.keep_alive
        self.stats.last_headers = dict(request.headers)
        try:
            routes = {"/v1/models": "GET", "/v1/chat/completions": "POST"}
            allowed = routes.get(request.path)
            if allowed is None:
                raise _HttpError(
                    404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url"
                )
            if request.method != allowed:
                # A HEAD client would not read a body, so end the connection after this answer.
                raise _HttpError(
                    405,
                    f"Method {request.method} is not allowed for {request.path}.",
                    close=request.method == "HEAD",
                    headers={"Allow": allowed},
                )
            self._check_auth(request)
            if request.path == "/v1/models":
                if not self.config.list_models:
                    raise _HttpError(404, "Unknown request URL: GET /v1/models.", code="unknown_url")
                data = [
                    {"id": m, "object": "model", "created": _MODEL_CREATED, "owned_by": "simulator"}
                    for m in self.config.models
                ]
                if self.config.context_length:
                    window = self.config.context_length
                    data = [dict(m, context_length=window, max_model_len=window) for m in data]
                await self._send(
                    conn.writer,
                    200,
                    "application/json",
                    _json({"object": "list", "data": data}),
                    keep_alive=keep_alive,
                )
                return keep_alive
            return await self._chat(conn, request, keep_alive)
        except _HttpError as error:
            await self._send_error(conn.writer, error, keep_alive=keep_alive)
            return keep_alive and not error.close

    def _check_auth(self, request: _Request) -> None:
        if not self.config.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _HttpError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if not hmac.compare_digest(token.strip().encode(), self.config.api_key.encode()):
            raise _HttpError(401, "Incorrect API key provided.", code="invalid_api_key")

    # -- chat completions --

    async def _chat(self, conn: _Connection, request: _Request, keep_alive: bool) -> bool:
        self.stats.chat_requests += 1
        self.stats.last_chat_at = time.perf_counter()
        try:
            body = json.loads(request.body)
        except (UnicodeDecodeError, ValueError):
            raise _HttpError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise _HttpError(400, "The request body must be a JSON object.")
        self.stats.last_chat_body = body
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _HttpError(400, "You must provide a model parameter.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise _HttpError(400, "'messages' must be a non-empty array of message objects.")
        plan = _plan_for(self.config, model, body.get("simulator"), streaming=bool(body.get("stream")))
        base_model = model.partition("?")[0]
        # A proxy in front of the model fails first, before the headers' delay and the model's own checks.
        flaky_status: int | None = None
        if plan.flaky_drop is not None or plan.flaky_status is not None:
            attempt = self._flaky_attempts[model] = self._flaky_attempts.get(model, 0) + 1
            if plan.flaky_drop is not None and attempt <= plan.flaky_drop:
                return False  # closed without a byte of answer
            if plan.flaky_status is not None and attempt <= plan.flaky_status[1]:
                flaky_status = plan.flaky_status[0]
        if plan.slow_headers_ms and not await self._hold_headers(conn, plan.slow_headers_ms / 1000):
            return False
        if flaky_status is not None:
            raise _retry_status_error(flaky_status, base_model, plan)
        if plan.reject_stream_options and "stream_options" in body:  # as older servers and proxies do
            self.stats.rejected_stream_options += 1
            error_body = _openai_error(
                _STREAM_OPTIONS_REJECTED, "invalid_request_error", "stream_options", None
            )
            raise _HttpError(400, _STREAM_OPTIONS_REJECTED, body=error_body)
        if error := _answer_error(plan, base_model):
            raise error
        if plan.not_sse:
            await self._send(
                conn.writer, 200, "text/html; charset=utf-8", _PORTAL_PAGE.encode(), keep_alive=keep_alive
            )
            return keep_alive
        if plan.style == "markdown":
            tokens = markdown_tokens(plan.tokens)
        elif plan.style == "hostile":
            tokens = hostile_tokens(plan.tokens)
        else:
            tokens = reply_tokens(messages, plan.tokens)
        limit = body.get("max_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(tokens):
            tokens = tokens[:limit]  # as a real server does: stop at the limit and say so
            plan.finish_reason = "length"
        completion_id = f"chatcmpl-sim-{next(self._ids)}"
        thinking = plan.reasoning + (plan.think or 0)
        usage: dict[str, Any] = {
            "prompt_tokens": _prompt_tokens(messages),
            "completion_tokens": len(tokens) + thinking,
            "total_tokens": _prompt_tokens(messages) + len(tokens) + thinking,
        }
        if thinking:
            usage["completion_tokens_details"] = {"reasoning_tokens": thinking}
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._stream(
                conn, request, keep_alive, plan, model, completion_id, tokens, usage, include_usage
            )
        return await self._complete(conn, keep_alive, plan, model, completion_id, tokens, usage)

    async def _hold_headers(self, conn: _Connection, delay: float) -> bool:
        """Wait before answering at all (``slow-headers``); False when the client left meanwhile."""
        watcher = asyncio.create_task(conn.watch())
        try:
            await asyncio.wait({watcher}, timeout=delay)
            return not watcher.done()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _complete(
        self,
        conn: _Connection,
        keep_alive: bool,
        plan: _Plan,
        model: str,
        completion_id: str,
        tokens: list[str],
        usage: dict[str, Any],
    ) -> bool:
        """A non-streaming answer; stream-shaped faults map to their nearest whole-response equivalent.

        ``not-json``, ``bad-utf8`` and ``usage-null-choices`` have none and change nothing here.
        """
        if plan.slow_first_ms:
            await asyncio.sleep(plan.slow_first_ms / 1000)
        if plan.error_after is not None:
            raise _HttpError(500, "The model crashed.", error_type="server_error", code=500)
        if plan.stream_error is not None:
            message = STREAM_ERROR_MESSAGES[plan.stream_error[1]]
            raise _HttpError(500, message, error_type="server_error", code=500)
        content = "".join(tokens) if plan.answer is None else plan.answer
        if plan.think is not None:
            content = f"<think>{reasoning_text(plan.think)}</think>\n\n{content}"
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if plan.reasoning:
            message[plan.reasoning_key] = reasoning_text(plan.reasoning)
        completion: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": plan.finish_reason}],
        }
        if not plan.no_usage:
            completion["usage"] = usage
        body = _json(completion)
        if plan.cut_off_after is None and plan.stall_after is None:
            headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
            headers["Connection"] = "keep-alive" if keep_alive else "close"
            wire = _Wire(conn.writer, chunked=False, split=plan.split_bytes)
            conn.writer.write(_head(200, headers))
            await wire.send(body)
            return keep_alive
        # Cut-off and stall: promise the whole body, send half of it.
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
        conn.writer.write(_head(200, headers) + body[: len(body) // 2])
        await conn.writer.drain()
        if plan.stall_after is not None:
            await conn.watch()
        return False

    async def _stream(
        self,
        conn: _Connection,
        request: _Request,
        keep_alive: bool,
        plan: _Plan,
        model: str,
        completion_id: str,
        tokens: list[str],
        usage: dict[str, Any],
        include_usage: bool,
    ) -> bool:
        chunked = request.version == "1.1"  # an HTTP/1.0 client gets the body delimited by the close
        keep_alive = keep_alive and chunked
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        headers["Connection"] = "keep-alive" if keep_alive else "close"
        conn.writer.write(_head(200, headers))
        await conn.writer.drain()
        self.stats.streams_started += 1
        watcher = asyncio.create_task(conn.watch())
        try:
            outcome = await self._stream_body(
                conn, watcher, plan, model, completion_id, tokens, usage, include_usage, chunked
            )
        except ConnectionError:
            outcome = "aborted"
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if outcome == "aborted":
            self.stats.streams_aborted += 1
            return False
        self.stats.streams_completed += 1
        return keep_alive and outcome == "done"

    async def _stream_body(
        self,
        conn: _Connection,
        watcher: asyncio.Task[None],
        plan: _Plan,
        model: str,
        completion_id: str,
        tokens: list[str],
        usage: dict[str, Any],
        include_usage: bool,
        chunked: bool,
    ) -> str:
        """Send the events: "done", "cut-off" (connection closed on purpose) or "aborted" (client left)."""
        wire = _Wire(conn.writer, chunked=chunked, split=plan.split_bytes)
        event = _Events(plan.newline, plan.comments)
        prefix = (
            f'{{"id":"{completion_id}","object":"chat.completion.chunk","created":{int(time.time())},'
            f'"model":{json.dumps(model, ensure_ascii=False)},"choices":'
        ).encode()
        early = plan.early_end()
        # An empty reply still sends one chunk announcing the assistant role.
        content = tokens[: early[0]] if early is not None else tokens or [""]
        loop = asyncio.get_running_loop()
        start = loop.time() + plan.slow_first_ms / 1000

        async def client_still_there(deadline: float) -> bool:
            delay = deadline - loop.time()
            if delay > _WATCHED_SLEEP:
                await asyncio.wait({watcher}, timeout=delay)
            elif delay > 0:
                await asyncio.sleep(delay)
            return not watcher.done() and not conn.writer.is_closing()

        paced = 0
        for data, is_token in _reply_events(plan, prefix, content, event):
            if is_token:
                # Scheduled from one start time, so sleep() overshoot does not accumulate at high rates.
                if not await client_still_there(start + paced / plan.tps if plan.tps > 0 else start):
                    return "aborted"
                if plan.tps <= 0 and paced % 32 == 31:
                    await asyncio.sleep(0)  # as fast as possible, but fair to the other connections
                paced += 1
            await wire.send(data)

        if early is not None and early[1] == "cut-off":
            conn.writer.close()  # abrupt: no finish_reason, no [DONE], no terminating chunk
            return "cut-off"
        if early is not None and early[1] == "stall":
            await watcher  # nothing more until the client leaves (or the server closes)
            return "aborted"
        if early is not None and early[1] == "error":
            error = {"error": {"message": "The model crashed.", "type": "server_error", "code": 500}}
            await wire.send(event(_json(error)))
            await wire.send(event("[DONE]"))
        elif early is not None:
            assert plan.stream_error is not None
            await wire.send(_stream_error_event(plan.stream_error[1], event))
            if not plan.no_done:
                await wire.send(event("[DONE]"))
        else:
            if plan.chunks is None:  # (given chunks are the whole stream: they finish it, or not)
                finish = [{"index": 0, "delta": {}, "finish_reason": plan.finish_reason}]
                await wire.send(event(prefix + _json(finish) + b"}"))
            if include_usage and not plan.no_usage and plan.chunks is None:
                choices = b"null" if plan.usage_null_choices else b"[]"
                await wire.send(event(prefix + choices + b',"usage":' + _json(usage) + b"}"))
            if not plan.no_done:
                await wire.send(event("[DONE]"))
        await wire.end()
        return "done"
