"""Which upstream answers, and which models it offers.

The endpoint comes from ``CHAT_API_BASE`` / ``CHAT_API_KEY``. With neither
set, the process starts the project's own simulator on a loopback port, so a
fresh install chats offline and says so plainly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

from chat.upstream import Endpoint, fetch_model_ids

DEMO_MODEL_LABEL = "Demo (offline simulator)"

_demo_lock = threading.Lock()
_demo_simulator = None


@dataclass(frozen=True)
class ModelOption:
    id: str
    label: str


def default_endpoint() -> Endpoint:
    if settings.CHAT_DEMO:
        return Endpoint(base_url=_demo_base_url(), demo=True)
    return Endpoint(base_url=settings.CHAT_API_BASE, api_key=settings.CHAT_API_KEY)


async def endpoint() -> Endpoint:
    """``default_endpoint`` from async code (only starting the demo simulator needs a thread)."""
    if settings.CHAT_DEMO and _demo_simulator is None:
        return await sync_to_async(default_endpoint)()
    return default_endpoint()


def _demo_base_url() -> str:
    global _demo_simulator
    with _demo_lock:
        if _demo_simulator is None:
            from chat.simulator import SimulatorConfig, SimulatorThread

            simulator = SimulatorThread(
                config=SimulatorConfig(
                    tokens_per_second=settings.CHAT_DEMO_TOKENS_PER_SECOND,
                    reply_tokens=settings.CHAT_DEMO_REPLY_TOKENS,
                    models=(settings.CHAT_MODEL,),
                )
            )
            simulator.start()
            _demo_simulator = simulator
        return _demo_simulator.base_url


_usage_rejected: set[str] = set()  # base URLs of environment servers that refuse stream_options


def endpoint_for(provider_id: int | None) -> Endpoint:
    """The endpoint of an admin-added provider, or the environment's for None (database access)."""
    if provider_id is not None:
        from chat.models import Provider

        provider = Provider.objects.filter(pk=provider_id).first()
        if provider is not None:
            return Endpoint(
                base_url=provider.base_url.rstrip("/"),
                api_key=provider.api_key,
                provider_id=provider.pk,
                name=provider.name,
                extra_fields=dict(provider.extra_fields or {}),
                stream_usage=provider.stream_usage,
            )
    endpoint = default_endpoint()
    return replace(endpoint, stream_usage=endpoint.base_url not in _usage_rejected)


def remember_no_stream_usage(endpoint: Endpoint) -> None:
    """The server answered 400 to ``stream_options``: stop sending it there."""
    if endpoint.provider_id is None:
        _usage_rejected.add(endpoint.base_url)
        return
    from chat.models import Provider

    Provider.objects.filter(pk=endpoint.provider_id).update(stream_usage=False)


def model_options() -> list[ModelOption]:
    """The models the picker offers: the server's list (cached), else ``CHAT_MODEL``."""
    endpoint = default_endpoint()
    cache_key = f"chat:models:{endpoint.base_url}"
    ids = cache.get(cache_key)
    if ids is None:
        ids = fetch_model_ids(endpoint)
        # A server that lists nothing is asked again sooner than one that answered.
        cache.set(cache_key, ids, settings.CHAT_MODELS_CACHE_SECONDS if ids else 30)
    if settings.CHAT_MODEL not in ids:
        ids = [settings.CHAT_MODEL, *ids]
    return [ModelOption(id=model_id, label=model_label(model_id, endpoint)) for model_id in ids]


def model_label(model_id: str, endpoint: Endpoint | None = None) -> str:
    endpoint = endpoint or default_endpoint()
    if endpoint.demo and model_id == settings.CHAT_MODEL:
        return DEMO_MODEL_LABEL
    return model_id
