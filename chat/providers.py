"""Which upstream answers, and which models it offers.

The environment's endpoint comes from ``CHAT_API_BASE`` / ``CHAT_API_KEY``. With neither
set, the process starts the project's own simulator on a loopback port, so a
fresh install chats offline and says so plainly. Admins add more servers as
``Provider`` rows; the picker offers their models as ``p<pk>:<model id>``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError

from chat.upstream import Endpoint, ModelListError
from chat.upstream.listing import fetch_models, list_models

if TYPE_CHECKING:
    from chat.models import Provider

logger = logging.getLogger(__name__)

DEMO_MODEL_LABEL = "Demo (offline simulator)"

_demo_lock = threading.Lock()
_demo_simulator = None


@dataclass(frozen=True)
class ModelOption:
    id: str
    label: str
    provider_id: int | None = None  # None: the environment's server

    @property
    def value(self) -> str:
        """What the picker submits (see ``choice_value``)."""
        return choice_value(self.provider_id, self.id)


@dataclass(frozen=True)
class ModelGroup:
    """One ``<optgroup>`` of the picker: a server and the models it offers."""

    label: str
    options: list[ModelOption] = field(default_factory=list)


def default_endpoint() -> Endpoint:
    if settings.CHAT_DEMO:
        return Endpoint(base_url=_demo_base_url(), demo=True)
    return Endpoint(base_url=settings.CHAT_API_BASE, api_key=settings.CHAT_API_KEY)


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
            return provider_endpoint(provider)
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
    cache_key = _environment_key(endpoint)
    ids = cache.get(cache_key)
    if ids is None:
        ids = _ask_environment(endpoint)
    if settings.CHAT_MODEL not in ids:
        ids = [settings.CHAT_MODEL, *ids]
    return [ModelOption(id=model_id, label=model_label(model_id, endpoint)) for model_id in ids]


def model_label(model_id: str, endpoint: Endpoint | None = None) -> str:
    endpoint = endpoint or default_endpoint()
    if endpoint.demo and model_id == settings.CHAT_MODEL:
        return DEMO_MODEL_LABEL
    return model_id


# --- Admin-added providers: their models, the grouped picker, and what it submits ------------------

PROVIDER_VALUE = re.compile(r"p(\d{1,18}):(.+)", re.DOTALL)  # more digits: not a row id
CHOOSE_FROM_LIST = "Choose a model from the list."
LIST_TIMEOUT = 3.0  # seconds per server: the page waits for the slowest one, never for their sum
FAILED_LIST_SECONDS = 30  # a failed or empty listing is asked again this soon


class ModelChoice(NamedTuple):
    provider_id: int | None  # None: the environment's server
    model: str


def choice_value(provider_id: int | None, model: str) -> str:
    """The picker's value: the plain id for the environment's server (automation relies on it)."""
    return model if provider_id is None else f"p{provider_id}:{model}"


def provider_endpoint(provider: Provider) -> Endpoint:
    return Endpoint(
        base_url=provider.base_url.rstrip("/"),
        api_key=provider.api_key,
        provider_id=provider.pk,
        name=provider.name,
        extra_fields=dict(provider.extra_fields or {}),
        stream_usage=provider.stream_usage,
    )


def _listing_key(provider: Provider) -> str:
    # Any edit of the provider (address, key, models) changes updated_at, so it is asked afresh.
    return f"chat:models:provider:{provider.pk}:{provider.updated_at.timestamp():.6f}"


def _ask(endpoint: Endpoint) -> tuple[dict[str, int | None], str]:
    """The models the server lists (with context lengths) and "", or none and the sentence saying why."""
    try:
        return list_models(endpoint, timeout=LIST_TIMEOUT), ""
    except ModelListError as exc:
        return {}, exc.reason


def _ask_all(providers: list[Provider]) -> list[tuple[list[str], str]]:
    """Ask every provider's server at once (each within ``LIST_TIMEOUT``) and remember the answers."""
    if not providers:
        return []
    with ThreadPoolExecutor(max_workers=min(len(providers), 8)) as pool:
        answers = list(pool.map(_ask, [provider_endpoint(p) for p in providers]))
    for provider, (models, _) in zip(providers, answers, strict=True):
        remember_listing(provider, sorted(models), context_lengths=models)
    return [(sorted(models), error) for models, error in answers]


def check_model_lists(providers: list[Provider]) -> list[tuple[Provider, list[str], str]]:
    """For the admin: each provider's model list asked afresh, or the reason it could not be read."""
    return [(p, ids, error) for p, (ids, error) in zip(providers, _ask_all(providers), strict=True)]


def remember_listing(
    provider: Provider, ids: list[str], *, context_lengths: dict[str, int | None] | None = None
) -> None:
    _cache_listing(_listing_key(provider), ids, context_lengths or {})


def _cache_listing(key: str, ids: list[str], context_lengths: dict[str, int | None]) -> None:
    """A server that listed nothing (or failed) is asked again sooner than one that answered.

    The context lengths it reported are kept beside the ids (under ``key`` + ``:context``), so a
    reply finds its model's window without asking the server.
    """
    seconds = settings.CHAT_MODELS_CACHE_SECONDS if ids else FAILED_LIST_SECONDS
    reported = {model_id: length for model_id, length in context_lengths.items() if length}
    cache.set_many({key: ids, f"{key}:context": reported}, seconds)


def cached_listing(provider: Provider) -> list[str] | None:
    """The provider's last model list, if still cached (None: not asked lately)."""
    return cache.get(_listing_key(provider))


def _offered(provider: Provider, listing: list[str] | None) -> list[str]:
    if provider.all_models and listing:
        return listing
    return provider.configured_models()


def offered_models(providers: list[Provider]) -> dict[int, list[str]]:
    """Each provider's models: its listing (cached, the missing ones fetched in parallel) or its own list."""
    listings: dict[int, list[str] | None] = {}
    missing = []
    for provider in providers:
        if provider.all_models:
            listings[provider.pk] = cached_listing(provider)
            if listings[provider.pk] is None:
                missing.append(provider)
    for provider, (ids, _) in zip(missing, _ask_all(missing), strict=True):
        listings[provider.pk] = ids
    return {provider.pk: _offered(provider, listings.get(provider.pk)) for provider in providers}


def model_groups(*, provider_id: int | None, model: str) -> list[ModelGroup]:
    """The picker: the environment's server first, then each enabled provider by name.

    The conversation's current choice (``provider_id``, ``model``) is always among the options, even
    when its server no longer lists it. Servers whose list is not cached are asked at the same time.
    """
    from chat.models import Provider

    enabled = list(Provider.objects.filter(enabled=True).order_by("name"))
    missing = [p for p in enabled if p.all_models and cached_listing(p) is None]
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The environment's list is read beside the providers' (each may have to ask its server).
        environment = pool.submit(model_options) if missing else None
        offered = offered_models(enabled)
        options = environment.result() if environment is not None else model_options()
    endpoint = default_endpoint()
    groups = [ModelGroup(label="Offline demo" if endpoint.demo else endpoint.host, options=options)]
    for provider in enabled:
        ids = offered[provider.pk]
        groups.append(
            ModelGroup(
                label=provider.name,
                options=[ModelOption(id=i, label=i, provider_id=provider.pk) for i in ids],
            )
        )
    _include_current(groups, enabled, provider_id=provider_id, model=model)
    return groups


def _include_current(
    groups: list[ModelGroup], enabled: list[Provider], *, provider_id: int | None, model: str
) -> None:
    if not model:
        return
    if provider_id is None:
        group = groups[0]
        option = ModelOption(id=model, label=model_label(model))
    else:
        index = next((i for i, p in enumerate(enabled, start=1) if p.pk == provider_id), None)
        if index is None:
            return  # a disabled provider is not offered, not even to its conversations
        group = groups[index]
        option = ModelOption(id=model, label=model, provider_id=provider_id)
    if option.value not in {o.value for o in group.options}:
        group.options.append(option)


def parse_choice(value: object, *, default_provider_id: int | None, default_model: str) -> ModelChoice:
    """The picker's value as (provider, model), or ``ValidationError`` for one not on offer.

    Empty means the given default; a plain id goes to the environment's server (which accepts any
    id, as before providers existed); ``p<pk>:<model>`` must name an enabled provider and a model it
    offers. Only that last form reads the database (and perhaps the provider's model list).
    """
    if value is None or value == "":
        return ModelChoice(default_provider_id, default_model)
    if not isinstance(value, str) or not value.strip() or not value.strip().isprintable():
        raise ValidationError(CHOOSE_FROM_LIST)  # (no model id holds control characters or NUL)
    match = PROVIDER_VALUE.fullmatch(value.strip())
    if match is None:
        if len(value) > 200:
            raise ValidationError(CHOOSE_FROM_LIST)
        return ModelChoice(None, value.strip())
    provider_id, model = int(match[1]), match[2]
    if len(model) > 200:
        raise ValidationError(CHOOSE_FROM_LIST)
    from chat.models import Provider

    provider = Provider.objects.filter(pk=provider_id, enabled=True).first()
    if provider is None:
        raise ValidationError(CHOOSE_FROM_LIST)
    on_offer = (
        (provider_id, model) == (default_provider_id, default_model)  # kept even if no longer listed
        or model in provider.configured_models()
        or model in offered_models([provider])[provider.pk]
    )
    if not on_offer:
        raise ValidationError(CHOOSE_FROM_LIST)
    return ModelChoice(provider_id, model)


# --- Each model's context window, for fitting what goes upstream (chat.context) -------------------

_warming: set[str] = set()  # cache keys of listings being asked for in the background
_warming_lock = threading.Lock()
_warmer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="model-list")


def _environment_key(endpoint: Endpoint) -> str:
    return f"chat:models:{endpoint.base_url}"


def _ask_environment(endpoint: Endpoint) -> list[str]:
    """Ask the environment's server for its models and remember them (ids and context lengths)."""
    models = fetch_models(endpoint)
    ids = sorted(models)
    _cache_listing(_environment_key(endpoint), ids, models)
    return ids


def reply_target(provider_id: int | None, model: str) -> tuple[Endpoint, int]:
    """Where a reply goes and its model's context window in tokens (one read of the provider row).

    Never waits for a server: the window comes from the cached model list (filled whenever the
    picker is shown or a list is checked). When none is cached, the provider's ``context_length``
    or ``CHAT_CONTEXT_LENGTH`` serves this reply and the list is asked for in the background, so
    the next reply gets the reported window and this one is not delayed.
    """
    from chat.models import Provider

    provider = Provider.objects.filter(pk=provider_id).first() if provider_id is not None else None
    if provider is not None:
        fallback = provider.context_length or settings.CHAT_CONTEXT_LENGTH
        key = _listing_key(provider)
        window = _reported_window(key, model, lambda: _ask_all([provider]))
        return provider_endpoint(provider), window or fallback
    endpoint = endpoint_for(None)
    key = _environment_key(endpoint)
    window = _reported_window(key, model, lambda: _ask_environment(endpoint))
    return endpoint, window or settings.CHAT_CONTEXT_LENGTH


def _reported_window(key: str, model: str, ask: Callable[[], object]) -> int | None:
    """The cached context length of ``model`` (a simulator's ``demo?options`` is its ``demo``)."""
    reported = cache.get(f"{key}:context")
    if reported is None:
        _warm(key, ask)
        return None
    return reported.get(model) or reported.get(model.partition("?")[0])


def _warm(key: str, ask: Callable[[], object]) -> None:
    with _warming_lock:
        if key in _warming:
            return
        _warming.add(key)

    def run() -> None:
        try:
            ask()
        except Exception:
            logger.exception("Asking for the model list (%s) failed", key)
        finally:
            with _warming_lock:
                _warming.discard(key)

    _warmer.submit(run)
