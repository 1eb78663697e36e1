"""HTML sent over the socket: frames that append to a reply, add or redraw messages, end a reply.

Model output is untrusted: every piece of it that reaches a page is escaped
here or by the templates' autoescaping, so nothing it writes can add markup.
The markup itself lives in the templates (``chat/_message.html`` and the
partials of ``chat/chat.html``); only the per-token frame is built here, by
hand, because it is the hot path.

Daphne refuses WebSocket messages over 1 MiB, so no frame carries more than
``MAX_FRAME_CHARS`` characters of text (escaping grows text at most six-fold):
a longer text goes out as the element with its first part, then append frames.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.template.loader import render_to_string
from django.utils.html import escape

from chat import selectors
from chat.models import Message

MAX_FRAME_CHARS = 100_000
BATCH_BYTES = 256 * 1024  # messages redrawn together per frame, up to about this much markup


def delta_frame(message_id: int, text: str) -> str:
    """Append ``text`` to the ``m-<id>-body`` element of a reply (``text`` within the frame limit)."""
    return _append_frame(f"m-{message_id}-body", text)


def delta_frames(message_id: int, text: str) -> list[str]:
    """Append ``text`` of any length, in as many frames as the size limit needs."""
    return _append_frames(f"m-{message_id}-body", text)


def reasoning_frames(message_id: int, text: str) -> list[str]:
    """Append ``text`` to the reply's "Thinking" section (``m-<id>-reasoning``)."""
    return _append_frames(f"m-{message_id}-reasoning", text)


def _append_frame(element_id: str, text: str) -> str:
    return f'<span id="{element_id}" hx-swap-oob="beforeend">{escape(text)}</span>'


def _append_frames(element_id: str, text: str) -> list[str]:
    return [
        _append_frame(element_id, text[start : start + MAX_FRAME_CHARS])
        for start in range(0, len(text), MAX_FRAME_CHARS)
    ]


def note_frame(message_id: int, note: str) -> str:
    """The line under a streaming reply: a visible note (a retry), or the hidden "Writing…"."""
    context = {"message": {"pk": message_id}, "note": note, "oob": True}
    return render_to_string("chat/_message_note.html", context)


def message_html(message: Message, *, oob: bool = False) -> str:
    """The message element; only its first ``MAX_FRAME_CHARS`` characters of text (see ``_split``)."""
    return render_to_string("chat/_message.html", {"message": message, "oob": oob})


def _split(message: Message, *, oob: bool = False) -> tuple[str, list[str]]:
    """The element with the first part of its text and reasoning, and the frames that append the rest."""
    content, reasoning = message.content, message.reasoning
    if len(content) <= MAX_FRAME_CHARS and len(reasoning) <= MAX_FRAME_CHARS:
        return message_html(message, oob=oob), []
    message.content, message.reasoning = content[:MAX_FRAME_CHARS], reasoning[:MAX_FRAME_CHARS]
    try:
        head = message_html(message, oob=oob)
    finally:
        message.content, message.reasoning = content, reasoning
    rest = reasoning_frames(message.pk, reasoning[MAX_FRAME_CHARS:])
    return head, rest + delta_frames(message.pk, content[MAX_FRAME_CHARS:])


def _list_frames(messages: Iterable[Message], *, first_swap: str) -> list[str]:
    """Messages added to ``#messages``: the first frame swaps with ``first_swap``, the rest append."""
    frames: list[str] = []
    batch: list[str] = []
    size = 0
    swap = first_swap

    def flush() -> None:
        nonlocal batch, size, swap
        frames.append(f'<div id="messages" hx-swap-oob="{swap}">{"".join(batch)}</div>')
        batch, size, swap = [], 0, "beforeend"

    for message in messages:
        head, rest = _split(message)
        if batch and size + len(head) > BATCH_BYTES:
            flush()
        batch.append(head)
        size += len(head)
        if rest:
            flush()
            frames.extend(rest)
    if batch or swap != "beforeend":
        flush()
    return frames


def messages_appended_frames(messages: Iterable[Message]) -> list[str]:
    """New messages, added at the end of the conversation on every subscribed page."""
    return _list_frames(messages, first_swap="beforeend")


def branch_frames(messages: Iterable[Message]) -> list[str]:
    """The whole branch on screen, replacing what the page shows (a switch, an edit, a resync)."""
    return _list_frames(messages, first_swap="innerHTML")


def message_frames(message: Message) -> list[str]:
    """The message element replacing the one on the page (a snapshot of a streaming reply)."""
    head, rest = _split(message, oob=True)
    return [head, *rest]


def ending_frame(message: Message) -> str:
    """A reply ended: its footer (status note, figures, actions) and, through it, its ``data-status``.

    The text is not re-sent: every delta went out before the ending.
    """
    selectors.attach_versions(message)
    return render_to_string("chat/_message_meta.html", {"message": message, "oob": True})


def state_frame(version: int, *, streaming: bool) -> str:
    """The conversation's version (for resuming) and whether a reply is being written (Stop button)."""
    return render_to_string(
        "chat/chat.html#chat_state", {"version": version, "streaming": streaming, "oob": True}
    )


def composer_ack_frame(client_id: str) -> str:
    """Tell the sender its message is stored: a fresh idempotency key and no notice."""
    context = {"client_id": client_id, "notice": "", "oob": True}
    return render_to_string("chat/chat.html#client_id_field", context) + render_to_string(
        "chat/chat.html#composer_notice", context
    )


def notice_frame(text: str) -> str:
    """A plain-language notice under the composer (bad input, a refused send)."""
    return render_to_string("chat/chat.html#composer_notice", {"notice": text, "oob": True})
