"""What a page can ask of a conversation, and what a page is shown when it (re)connects.

Shared by the new-chat view and the conversation socket, so both keep the same
order: store and commit first, tell subscribers second, call the upstream last.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from chat import fanout, providers, rendering, selectors, services, streaming
from chat.models import Conversation, Message
from chat.subscription import FINISHED
from chat.upstream import ChatRequest, Endpoint

logger = logging.getLogger(__name__)

RESTARTING = "The server is restarting; send your message again in a moment."
NOTHING_TO_STOP = "Nothing is being written right now."
NOT_UNDERSTOOD = "That request was not understood."
FAILED = "Something went wrong with that request; reload the page and try again."


async def handle(conversation: Conversation, fields: dict[str, Any]) -> list[str]:
    """Carry out one request from a page's socket; return the frames for that page alone.

    Every request gets an answer and leaves the socket usable, whatever its fields hold.
    """
    action = fields.get("action") or "send"
    handler = _ACTIONS.get(action) if isinstance(action, str) else None
    if handler is None:
        return [rendering.notice_frame(NOT_UNDERSTOOD)]
    try:
        return await handler(conversation, fields)
    except ValidationError as exc:
        return [rendering.notice_frame(exc.messages[0])]
    except Exception:
        logger.exception("Conversation %s: the request %r failed", conversation.pk, action)
        return [rendering.notice_frame(FAILED)]


async def post_message(conversation: Conversation, fields: dict[str, Any]) -> list[str]:
    """Store a message sent over the socket and start its reply; acknowledge with a fresh key."""
    text = services.clean_text(fields.get("text"))
    choice = await model_choice(
        fields.get("model"), default_provider_id=conversation.provider_id, default_model=conversation.model
    )
    client_id = services.clean_client_id(fields.get("client_id"))
    await _store_and_start(
        services.message_post,
        conversation=conversation,
        text=text,
        model=choice.model,
        provider_id=choice.provider_id,
        client_id=client_id,
    )
    return [rendering.composer_ack_frame(str(uuid.uuid4()))]


async def regenerate(conversation: Conversation, fields: dict[str, Any]) -> list[str]:
    # No model: the conversation's current provider and model (read under the row lock).
    choice = await model_choice(fields.get("model"), default_provider_id=None, default_model="")
    await _store_and_start(
        services.reply_regenerate,
        conversation=conversation,
        message_id=fields.get("message_id"),
        model=choice.model,
        provider_id=choice.provider_id,
    )
    return []


async def edit(conversation: Conversation, fields: dict[str, Any]) -> list[str]:
    text = services.clean_text(fields.get("text"))
    choice = await model_choice(fields.get("model"), default_provider_id=None, default_model="")
    await _store_and_start(
        services.message_edit,
        conversation=conversation,
        message_id=fields.get("message_id"),
        text=text,
        model=choice.model,
        provider_id=choice.provider_id,
    )
    return []


async def model_choice(
    value: object, *, default_provider_id: int | None, default_model: str
) -> providers.ModelChoice:
    """``providers.parse_choice`` from async code: only a provider's model needs the database."""
    parse = functools.partial(
        providers.parse_choice, value, default_provider_id=default_provider_id, default_model=default_model
    )
    if isinstance(value, str) and providers.PROVIDER_VALUE.fullmatch(value.strip()):
        return await streaming.in_worker_thread(parse)()
    return parse()


async def switch(conversation: Conversation, fields: dict[str, Any]) -> list[str]:
    version = await database_sync_to_async(services.branch_switch)(
        conversation=conversation, message_id=fields.get("message_id")
    )
    await _publish_branch(conversation, version, streaming=False)
    return []


async def stop(conversation: Conversation, fields: dict[str, Any]) -> list[str]:
    """Stop the reply being written, wherever it runs (this worker or another)."""
    replies = await database_sync_to_async(selectors.streaming_messages)(conversation=conversation)
    if not replies:
        return [rendering.notice_frame(NOTHING_TO_STOP)]
    await stop_replies(replies)  # this worker's directly, others' through the layer
    now = timezone.now()
    if any(reply.lease_expires_at is None or reply.lease_expires_at < now for reply in replies):
        await sweep(conversation.pk)  # a reply whose worker is gone cannot be stopped: it was interrupted
    return []


async def show_version_of(conversation: Conversation, message_id: int) -> bool:
    """Make the branch on screen the one through ``message_id`` (a search hit in another version).

    False when it is on screen already, or is not this conversation's, or a reply is being written.
    """
    path, _ = await database_sync_to_async(selectors.branch_path)(conversation)
    if message_id in path:
        return False
    try:
        version = await database_sync_to_async(services.branch_switch)(
            conversation=conversation, message_id=message_id
        )
    except ValidationError:
        return False
    await _publish_branch(conversation, version, streaming=False)
    return True


async def stop_replies(replies: list[Message]) -> None:
    """Stop these replies' generations wherever they run (their rows may be gone: nothing is saved)."""
    hub = await fanout.get_hub()
    for reply in replies:
        if reply.worker:
            await hub.send_command(reply.worker, "stop", reply_id=reply.pk)


_ACTIONS = {"send": post_message, "regenerate": regenerate, "edit": edit, "switch": switch, "stop": stop}


async def start_conversation(
    *, user: Any, text: str, model: str, provider_id: int | None = None, client_id: uuid.UUID | None = None
) -> services.PostedTurn:
    """The new-chat page: create the conversation with its first turn and start the reply."""
    return await _store_and_start(
        services.conversation_start,
        user=user,
        text=text,
        model=model,
        provider_id=provider_id,
        client_id=client_id,
    )


async def first_message(text: object, model: object) -> tuple[str, providers.ModelChoice]:
    """A new chat's first message and its model, checked: ``ValidationError`` says what is wrong."""
    cleaned = services.clean_text(text)
    choice = await model_choice(model, default_provider_id=None, default_model=settings.CHAT_MODEL)
    return cleaned, choice


async def start_from_socket(user: Any, fields: dict[str, Any]) -> tuple[Conversation, list[str]] | str:
    """The new-chat page's first message over its socket: the conversation and the frames that
    turn the page into its page (its address, the sidebar, a fresh key), or a notice frame.
    """
    action = fields.get("action") or "send"
    if action != "send":
        return rendering.notice_frame(NOT_UNDERSTOOD if action != "stop" else NOTHING_TO_STOP)
    try:
        text, choice = await first_message(fields.get("text"), fields.get("model"))
        client_id = services.clean_client_id(fields.get("client_id"))
        turn = await start_conversation(
            user=user, text=text, model=choice.model, provider_id=choice.provider_id, client_id=client_id
        )
    except ValidationError as exc:
        return rendering.notice_frame(exc.messages[0])
    reply = turn.reply
    if Message.conversation.is_cached(reply):  # created just now: no second trip to the database
        conversation = reply.conversation
    else:
        conversation = await Conversation.objects.aget(pk=reply.conversation_id)
    return conversation, [
        rendering.conversation_started_frame(conversation),
        rendering.composer_ack_frame(str(uuid.uuid4())),
    ]


@dataclass
class _Prepared:
    turn: services.PostedTurn
    frames: list[str]  # what every page is shown before the reply starts
    request: ChatRequest | None = None  # what goes upstream
    endpoint: Endpoint | None = None  # and where


def _prepare(service: Any, kwargs: dict[str, Any]) -> _Prepared:
    """Store the turn, render its announcement and read its history: one trip to the database."""
    turn = service(**kwargs)
    if not turn.created:
        return _Prepared(turn=turn, frames=[])
    if turn.refused:  # the reply ended at once, saying which limit and when it resets
        if turn.forked:
            current = Conversation.objects.get(pk=turn.reply.conversation_id)
            frames = rendering.branch_frames(selectors.shown_messages(conversation=current))
        else:
            frames = rendering.messages_appended_frames(m for m in (turn.user_message, turn.reply) if m)
        frames.append(rendering.ending_frame(turn.reply))  # announced as an ending, as any other
        frames.append(rendering.state_frame(turn.version, streaming=False))
        return _Prepared(turn=turn, frames=frames)
    # The request first: the reply shows how many messages it leaves out from its first frame.
    endpoint, context_length = providers.reply_target(turn.reply.provider_id, turn.reply.model)
    request, omitted = selectors.reply_request(reply=turn.reply, context_length=context_length)
    if omitted:
        services.reply_omitted(reply=turn.reply, omitted=omitted)
    if turn.forked:
        frames = _branch_frames(turn.reply.conversation_id, turn.version, streaming=True)
    else:
        frames = rendering.messages_appended_frames(m for m in (turn.user_message, turn.reply) if m)
        frames.append(rendering.state_frame(turn.version, streaming=True))
    return _Prepared(turn=turn, frames=frames, request=request, endpoint=endpoint)


async def _store_and_start(service: Any, **kwargs: Any) -> services.PostedTurn:
    """Store a turn, show it on every subscribed page, then start its reply (in that order)."""
    if not streaming.accepting():
        raise ValidationError(RESTARTING)
    hub = await fanout.get_hub()
    kwargs["worker"] = hub.name
    await streaming.release_connection()
    try:
        prepared = await streaming.in_worker_thread(_prepare)(service, kwargs)
    except ValidationError as exc:
        # A reply left by a dead worker must not block the conversation: end it and try again.
        conversation = kwargs.get("conversation")
        if exc.messages != [services.BUSY] or conversation is None or not await sweep(conversation.pk):
            raise
        prepared = await streaming.in_worker_thread(_prepare)(service, kwargs)
    turn = prepared.turn
    if turn.created:
        await hub.publish(
            turn.reply.conversation_id.hex,
            {"kind": "change", "version": turn.version, "frames": prepared.frames},
        )
        if not turn.refused:
            streaming.start(turn.reply, endpoint=prepared.endpoint, hub=hub, request=prepared.request)
    return turn


def _branch_frames(conversation_id: uuid.UUID, version: int, *, streaming: bool) -> list[str]:
    """The branch on screen, then the conversation's state (read afresh: callers' copies are older)."""
    current = Conversation.objects.get(pk=conversation_id)
    frames = rendering.branch_frames(selectors.shown_messages(conversation=current))
    frames.append(rendering.state_frame(version, streaming=streaming))
    return frames


async def _publish_branch(conversation: Conversation, version: int, *, streaming: bool) -> None:
    frames = await database_sync_to_async(_branch_frames)(conversation.pk, version, streaming=streaming)
    hub = await fanout.get_hub()
    await hub.publish(conversation.pk.hex, {"kind": "change", "version": version, "frames": frames})


@fanout.periodic(lambda: settings.CHAT_SWEEP_SECONDS)
async def sweep_all() -> int:
    """Every worker, at start and then regularly: end replies whose worker died, wherever they are watched."""
    return await sweep()


async def sweep(conversation_id: uuid.UUID | None = None) -> int:
    """Mark replies of dead workers as interrupted (one conversation, or all) and tell their pages."""
    ended = await database_sync_to_async(services.sweep_interrupted)(conversation_id=conversation_id)
    for result in ended:
        logger.warning("Reply %s was interrupted: its worker stopped renewing it", result.reply.pk)
        await streaming.publish_ending(result)
    return len(ended)


# --- What a (re)connecting page is shown ------------------------------------------------


@dataclass
class Snapshot:
    frames: list[str]
    version: int
    seen: dict[int, int] = field(default_factory=dict)
    stale: set[int] = field(default_factory=set)  # shown from a checkpoint: their owner did not answer


def _state(conversation: Conversation) -> tuple[int, list[Message]]:
    """The version and the branch on screen, read together (the row lock orders them with writes)."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        return locked.version, selectors.shown_messages(conversation=locked)


async def snapshot(conversation: Conversation, *, since: int | None) -> Snapshot:
    """What a page that showed version ``since`` needs to be current, and where it then stands.

    The branch is redrawn only if the page's version is not the current one; a reply still
    being written is always replaced with its text so far, taken from the worker writing it.
    """
    await sweep(conversation.pk)
    version, messages = await database_sync_to_async(_state)(conversation)
    result = Snapshot(frames=[], version=version)
    hub = await fanout.get_hub()
    live: list[Message] = []
    for message in messages:
        if not message.is_streaming:
            result.seen[message.pk] = FINISHED
            continue
        text_seq = await _live_text(hub, message)
        if text_seq is None:
            ended = (
                await Message.objects.filter(pk=message.pk).exclude(status=Message.Status.STREAMING).afirst()
            )
            if ended is not None:
                # It ended since the state was read: show its final text; its ending (a later
                # version) is already on its way to this page and will set its status.
                message.content, message.reasoning = ended.content, ended.reasoning
                message.live_body = (ended.content_html, ended.reasoning_html)
                result.seen[message.pk] = FINISHED
                live.append(message)
            else:
                result.stale.add(message.pk)  # its worker's sweep or another's will end it
        else:
            message.content, message.reasoning, result.seen[message.pk], message.live_note, body = text_seq
            message.live_body = body
            live.append(message)
    if since != version:
        result.frames = await database_sync_to_async(rendering.branch_frames)(messages)
    else:
        for message in live:
            result.frames.extend(await database_sync_to_async(rendering.message_frames)(message))
    result.frames.append(rendering.state_frame(version, streaming=any(m.is_streaming for m in messages)))
    return result


async def _live_text(hub: fanout.Hub, message: Message) -> tuple[str, str, int, str, tuple[str, str]] | None:
    if not message.worker:
        return None
    answer = await hub.ask(message.worker, "snapshot", reply_id=message.pk)
    if answer is None:
        return None
    body = (answer["html"], answer["reasoning_html"])
    return answer["text"], answer.get("reasoning", ""), answer["seq"], answer.get("note", ""), body


def live_text(message: Message) -> None:
    """Put the text published so far on a streaming ``message`` written in this process (not saved)."""
    generation = streaming.running(message.pk)
    if generation is not None:
        message.content, message.reasoning, _ = generation.snapshot()
        message.live_body = generation.live_body()
        message.live_note = generation.note
