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


def list_model_ids(endpoint: Endpoint, *, timeout: float = 5.0) -> list[str]:
    """``GET {base}/models``, sorted ids; ``ModelListError`` with a plain sentence when it fails."""
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
    entries = listing.get("data") if isinstance(listing, dict) else listing
    if not isinstance(entries, list):
        raise ModelListError("The server's answer holds no model list.")
    ids = {entry.get("id") for entry in entries if isinstance(entry, dict)}
    return sorted(model_id for model_id in ids if isinstance(model_id, str) and 0 < len(model_id) <= 200)


def fetch_model_ids(endpoint: Endpoint, *, timeout: float = 5.0) -> list[str]:
    """The ids ``GET {base}/models`` lists; an empty list when the server lists none or fails."""
    try:
        return list_model_ids(endpoint, timeout=timeout)
    except ModelListError as exc:
        logger.info("The model list at %s is not available: %s", endpoint.host, exc.reason)
        return []
