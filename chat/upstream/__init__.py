"""The OpenAI-compatible chat completions client.

It turns an HTTP event stream into typed events (``events``), every way the call can fail into
an ``UpstreamError`` with one plain-language sentence for the user (``errors``), and keeps one
pooled ``httpx.AsyncClient`` per worker process (``client``). ``listing`` reads model lists.
"""

from chat.upstream.client import (
    RESERVED_FIELDS,
    ChatRequest,
    Endpoint,
    build_payload,
    close_clients,
    complete_chat,
    get_client,
    stream_chat,
)
from chat.upstream.errors import (
    ConnectFailure,
    CutOffError,
    UpstreamError,
    describe_status,
    error_message,
    retry_after_seconds,
    stream_error_reason,
)
from chat.upstream.events import (
    Done,
    Finish,
    ReasoningDelta,
    Retrying,
    Skipped,
    StreamEvent,
    TextDelta,
    ThinkTags,
    Usage,
    UsageOptionRejected,
    parse_chunk,
    parse_data,
)
from chat.upstream.listing import ModelListError, fetch_model_ids, list_model_ids

__all__ = [
    "RESERVED_FIELDS",
    "ChatRequest",
    "ConnectFailure",
    "CutOffError",
    "Done",
    "Endpoint",
    "Finish",
    "ModelListError",
    "ReasoningDelta",
    "Retrying",
    "Skipped",
    "StreamEvent",
    "TextDelta",
    "ThinkTags",
    "UpstreamError",
    "Usage",
    "UsageOptionRejected",
    "build_payload",
    "close_clients",
    "complete_chat",
    "describe_status",
    "error_message",
    "fetch_model_ids",
    "get_client",
    "list_model_ids",
    "parse_chunk",
    "parse_data",
    "retry_after_seconds",
    "stream_chat",
    "stream_error_reason",
]
