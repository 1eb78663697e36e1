"""An OpenAI-compatible chat completions simulator on a real loopback HTTP/1.1 server.

Tests, benchmarks and the offline demo mode talk to it exactly as they would to a
real provider. It is written on ``asyncio.start_server`` with a small hand-written
HTTP/1.1 parser rather than a framework because fault injection needs byte-level
control of the wire (split UTF-8, bare CR line ends, abrupt closes, stalls), and
because a coroutine per connection keeps 1,000+ concurrent keep-alive streams cheap.

Behaviour is chosen per server (``SimulatorConfig``) or per request, through options
after ``?`` in the model name (``demo?tokens=20&tps=200&fault=status-429``) or a
top-level ``"simulator": {...}`` object in the JSON body, so that tests driving the
app (which only controls the model name) can pick a fault.

Faults (combine with ``+``):

- answers instead of a stream: ``status-<code>``, ``status-400-context``, ``html-status-<code>``,
  ``detail-status-<code>`` (FastAPI ``{"detail": ...}``), ``text-status-<code>`` (a proxy's plain
  text), ``not-sse``, ``reject-stream-options`` (400 when the body has ``stream_options``);
- retries: ``flaky-<code>-<n>`` (the first n requests with this exact model string get the status),
  ``flaky-drop-<n>`` (... get the connection closed without an answer);
- the stream ending early, after n content tokens: ``cut-off-after-<n>``, ``stall-after-<n>``,
  ``error-event-after-<n>``, ``stream-error-<shape>-after-<n>`` (shapes in ``STREAM_ERROR_SHAPES``),
  ``event-error-after-<n>`` (``event: error``), ``error-field-after-<n>`` (an ``error:`` line);
- the stream's content: ``reasoning-<n>`` (``delta.reasoning_content``), ``reasoning-field-<n>``
  (``delta.reasoning``), ``think-<n>`` (a ``<think>`` block, tags split across chunks),
  ``not-json-<n>`` and ``bad-utf8-<n>`` (one broken event after n content tokens, then the rest),
  ``nul-<n>``, ``surrogate-<n>`` and ``split-surrogate-<n>`` (after n content tokens, content
  holding a ``\\u0000`` escape, a high surrogate whose low half never comes, or an emoji whose
  two halves arrive in separate chunks),
  ``finish-length``, ``finish-content-filter``, ``no-usage``, ``usage-null-choices``, ``no-done``;
- the wire: ``split-bytes``, ``crlf``, ``cr``, ``comments``, ``slow-first-<ms>`` (headers at once,
  first token late), ``slow-headers-<ms>`` (nothing at all until then).

Options besides ``fault``: ``chunks`` (a JSON array, or its text, streamed instead of the reply:
a string is one content delta, written with JSON escapes; an object is a whole chunk; then
``[DONE]``, with no finish or usage chunk of the simulator's own), ``style`` (``markdown``: the
reply is a Markdown passage with headings, lists, code and a table; ``hostile``: Markdown and HTML
that try to run script or reach outside the reply; either repeated to ``tokens``),
``tokens``, ``tps``, ``retry_after`` (the ``Retry-After`` value on 429 and 503 answers, default
``7`` on 429) and ``retry_after_ms`` (a ``retry-after-ms`` header, which then replaces the
default ``Retry-After``). Whole (non-streaming) answers also take ``answer`` (their text, instead
of the reply's) and ``answer_fault`` (their faults, instead of ``fault``), so a side request such
as a title can be given its own text, delay or failure while the replies stream as usual. A
request's ``max_tokens`` cuts the reply there with ``finish_reason: "length"``, as a real server
does.
"""

from __future__ import annotations

from chat.simulator.plan import (
    BAD_UTF8_BYTES,
    BAD_UTF8_TEXT_DECODED,
    FAULT_NAMES,
    NOT_JSON_DATA,
    NUL_TEXT,
    SPLIT_SURROGATE_PIECES,
    STREAM_ERROR_MESSAGES,
    STREAM_ERROR_PAYLOADS,
    STREAM_ERROR_SHAPES,
    SURROGATE_TEXT,
    SimulatorConfig,
)
from chat.simulator.replies import (
    hostile_tokens,
    markdown_tokens,
    reasoning_text,
    reasoning_tokens,
    reply_text,
    reply_tokens,
)
from chat.simulator.server import Simulator
from chat.simulator.stats import SimulatorStats
from chat.simulator.thread import SimulatorThread, start_simulator

__all__ = [
    "BAD_UTF8_BYTES",
    "BAD_UTF8_TEXT_DECODED",
    "FAULT_NAMES",
    "NOT_JSON_DATA",
    "NUL_TEXT",
    "SPLIT_SURROGATE_PIECES",
    "STREAM_ERROR_MESSAGES",
    "STREAM_ERROR_PAYLOADS",
    "STREAM_ERROR_SHAPES",
    "SURROGATE_TEXT",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "SimulatorThread",
    "hostile_tokens",
    "markdown_tokens",
    "reasoning_text",
    "reasoning_tokens",
    "reply_text",
    "reply_tokens",
    "start_simulator",
]
