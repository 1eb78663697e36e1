"""The models a server offers (``GET {base}/models``)."""

from __future__ import annotations

import logging

import httpx

from chat.upstream.client import Endpoint
from chat.upstream.errors import describe_status

logger = logging.getLogger(__name__)


class ModelListError(Exception):
    """The server's model list could not be read; ``reason`` is one sentence for the admin."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Where servers report a model's context window: OpenRouter, Together and LiteLLM
# ``context_length``, vLLM ``max_model_len``, Groq ``context_window``, LM Studio
# ``max_context_length``; OpenRouter also under ``top_provider``. OpenAI itself reports none.
CONTEXT_LENGTH_FIELDS = ("context_length", "max_model_len", "context_window", "max_context_length")


def list_model_ids(endpoint: Endpoint, *, timeout: float = 5.0) -> list[str]:
    """``GET {base}/models``, sorted ids; ``ModelListError`` with a plain sentence when it fails."""
    return sorted(list_models(endpoint, timeout=timeout))


def list_models(endpoint: Endpoint, *, timeout: float = 5.0) -> dict[str, int | None]:
    """``GET {base}/models``: each model id and its context length (None: not reported).

    ``ModelListError`` with a plain sentence when it fails.
    """
    try:
        response = httpx.get(f"{endpoint.base_url}/models", headers=endpoint.headers(), timeout=timeout)
    except httpx.TimeoutException:
        raise ModelListError(f"{endpoint.host} did not answer within {timeout:g} seconds.") from None
    except httpx.HTTPError as exc:
        raise ModelListError(
            f"Could not connect to {endpoint.host} ({str(exc)[:200] or type(exc).__name__})."
        ) from None
    if response.status_code != 200:
        content_type = response.headers.get("content-type", "")
        raise ModelListError(
            describe_status(response.status_code, response.content[:65536], content_type, response.headers)
        )
    try:
        listing = response.json()
    except ValueError:
        raise ModelListError("The server's model list is not JSON.") from None
    return parse_models(listing)


def parse_models(listing: object) -> dict[str, int | None]:
    """The model ids of a ``/models`` answer and their context lengths (None where not reported)."""
    entries = listing.get("data") if isinstance(listing, dict) else listing
    if not isinstance(entries, list):
        raise ModelListError("The server's answer holds no model list.")
    models: dict[str, int | None] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        model_id = entry.get("id")
        if isinstance(model_id, str) and 0 < len(model_id) <= 200:
            models[model_id] = context_length_of(entry) or models.get(model_id)
    return models


def context_length_of(entry: dict) -> int | None:
    """The context window one model object reports, in tokens, or None."""
    top_provider = entry.get("top_provider")
    places = [entry, top_provider] if isinstance(top_provider, dict) else [entry]
    for place in places:
        for name in CONTEXT_LENGTH_FIELDS:
            value = place.get(name)
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31:
                return value
    return None


def fetch_model_ids(endpoint: Endpoint, *, timeout: float = 5.0) -> list[str]:
    """The ids ``GET {base}/models`` lists; an empty list when the server lists none or fails."""
    return sorted(fetch_models(endpoint, timeout=timeout))


def fetch_models(endpoint: Endpoint, *, timeout: float = 5.0) -> dict[str, int | None]:
    """``list_models``, or nothing when the server lists none or fails (logged)."""
    try:
        return list_models(endpoint, timeout=timeout)
    except ModelListError as exc:
        logger.info("The model list at %s is not available: %s", endpoint.host, exc.reason)
        return {}
