"""HTML sent over the socket: frames that grow a reply, add or redraw messages, end a reply.

Model output is untrusted: a reply's text reaches a page only as ``chat.markdown``'s sanitized HTML
or escaped here (the open tail of a streaming reply), so nothing it writes can add markup. The
markup itself lives in the templates (``chat/_message.html`` and the partials of
``chat/chat.html``); only the per-token frames are built here, by hand, because they are the hot
path.

A streaming reply's body holds its finished blocks and then its open tail (``m-<id>-tail``); an
``incremental.Update`` becomes one frame that inserts blocks before the tail, resets it, or appends
to it (``chat.incremental`` says why this is linear). Appended text goes out in pieces of at most
``MAX_FRAME_CHARS`` characters, well under Daphne's 1 MiB (escaping grows text at most five-fold).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from chat import incremental, markdown, oob, selectors
from chat.incremental import IncrementalMarkdown, Tail, Update
from chat.models import Conversation, Message

MAX_FRAME_CHARS = 100_000
BATCH_BYTES = 256 * 1024  # messages redrawn together per frame, up to about this much markup


@dataclass(frozen=True, slots=True)
class Part:
    """The element ids of one rendered text of a reply: its answer (body) or its reasoning."""

    container: str
    tail: str
    code: str


def body_part(message_id: int) -> Part:
    return Part(f"m-{message_id}-body", f"m-{message_id}-tail", f"m-{message_id}-code")


def reasoning_part(message_id: int) -> Part:
    return Part(f"m-{message_id}-reasoning", f"m-{message_id}-rtail", f"m-{message_id}-rcode")


def update_frames(part: Part, update: Update) -> list[str]:
    """What a page does for ``update``, as frames: one, unless there is a lot of it."""
    if update.replace is not None:
        return oob.frames(part.container, "innerHTML", update.replace)
    frames: list[str] = []
    if update.blocks:
        frames += oob.frames(part.tail, "beforebegin", update.blocks)
    if update.tail is not None:
        frames += oob.frames(part.tail, "innerHTML", tail_inner(part, update.tail))
    if update.append:
        frames += _append_frames(part.code if update.code else part.tail, update.append)
    if update.ended:
        frames.append(f"<div {oob.envelope(part.tail, 'delete')}></div>")
    return _merged(frames)


def _merged(frames: list[str]) -> list[str]:
    """Consecutive frames joined into one socket message while it stays well under the limit."""
    merged: list[str] = []
    for frame in frames:
        if merged and (len(merged[-1]) + len(frame)) * 4 <= oob.MAX_FRAME_BYTES:
            merged[-1] += frame
        else:
            merged.append(frame)
    return merged


def tail_inner(part: Part, tail: Tail) -> str:
    """The open tail's contents: its text as typed, or the code of an open fence (trusted markup)."""
    if tail.language is None:
        return escape_text(tail.text)
    label = escape(tail.language) if tail.language else "code"
    return (
        '<div class="code-block code-open">'
        f'<div class="code-head"><span class="code-lang">{label}</span></div>'
        f'<pre class="highlight"><code id="{part.code}">{escape_text(tail.text)}</code></pre></div>'
    )


_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape_text(text: str) -> str:
    """``text`` as element content: only ``&``, ``<`` (and ``>``, for readers) need escaping there.

    Quotes matter only inside attributes; left as they are, a reply's quotes cost one byte, not six.
    """
    return text.translate(_TEXT_ESCAPES)


def live_html(part: Part, rendering: IncrementalMarkdown) -> str:
    """A streaming text as a page shows it: its finished blocks, then its open tail."""
    tail = rendering.tail
    if tail is None:
        return rendering.html()
    return f'{rendering.html()}<div class="md-tail" id="{part.tail}">{tail_inner(part, tail)}</div>'


def reply_html(message: Message) -> tuple[SafeString, SafeString]:
    """The answer and the reasoning of a reply, as its element shows them.

    A finished reply shows what was stored at its ending (older rows are rendered now); a
    streaming one shows its live rendering when this process has it (``live_body``), else its
    last checkpoint rendered as if it had streamed.
    """
    if message.role != Message.Role.ASSISTANT:
        return mark_safe(markdown.plain(message.content)), mark_safe("")
    live = getattr(message, "live_body", None)
    if live is not None:
        return mark_safe(live[0]), mark_safe(live[1])
    if message.is_streaming:
        return (
            mark_safe(live_html(body_part(message.pk), incremental.snapshot(message.content))),
            mark_safe(live_html(reasoning_part(message.pk), incremental.snapshot(message.reasoning))),
        )
    body = (
        message.content_html
        if message.content_html or not message.content
        else markdown.render(message.content)
    )
    thinking = (
        message.reasoning_html
        if message.reasoning_html or not message.reasoning
        else markdown.render(message.reasoning)
    )
    return mark_safe(body), mark_safe(thinking)


def _append_frame(element_id: str, text: str) -> str:
    return f"<span {oob.envelope(element_id, 'beforeend')}>{escape_text(text)}</span>"


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
    """The message element, its text rendered (``reply_html``)."""
    return render_to_string("chat/_message.html", {"message": message, "oob": oob})


def _list_frames(messages: Iterable[Message], *, first_swap: str) -> list[str]:
    """Messages added to ``#messages``: the first frame swaps with ``first_swap``, the rest append.

    Frames hold about ``BATCH_BYTES`` of markup each, so a long conversation draws as it arrives.
    A window of the branch (``selectors.Branch``) starts with the control that loads older messages.
    """
    markup = "".join(message_html(message) for message in messages)
    if isinstance(messages, selectors.Branch) and messages.older:
        markup = render_to_string("chat/_older.html", {"first": messages[0]}) + markup
    if not markup and first_swap == "beforeend":
        return []
    return oob.frames("messages", first_swap, markup, limit=BATCH_BYTES)


def messages_appended_frames(messages: Iterable[Message]) -> list[str]:
    """New messages, added at the end of the conversation on every subscribed page."""
    return _list_frames(messages, first_swap="beforeend")


def branch_frames(messages: Iterable[Message]) -> list[str]:
    """The whole branch on screen, replacing what the page shows (a switch, an edit, a resync)."""
    return _list_frames(messages, first_swap="innerHTML")


def message_frames(message: Message) -> list[str]:
    """The message element replacing the one on the page (a snapshot of a streaming reply).

    A message too large for one frame is sent with its texts empty, then they follow.
    """
    element = message_html(message, oob=True)
    if len(element) * 4 <= oob.MAX_FRAME_BYTES:
        return [element]
    body, thinking = reply_html(message)
    message.live_body = ("", "")
    try:
        frames = [message_html(message, oob=True)]
    finally:
        message.live_body = (body, thinking)
    for part, markup in ((body_part(message.pk), body), (reasoning_part(message.pk), thinking)):
        if markup:
            frames += oob.frames(part.container, "innerHTML", markup)
    return frames


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


def conversation_started_frame(conversation: Conversation) -> str:
    """The new-chat page now shows ``conversation``: its address and title, and the sidebar's new entry."""
    return render_to_string("chat/_conversation_started.html", {"conversation": conversation})


def notice_frame(text: str) -> str:
    """A plain-language notice under the composer (bad input, a refused send)."""
    return render_to_string("chat/chat.html#composer_notice", {"notice": text, "oob": True})


def title_frames(conversation: Conversation) -> list[str]:
    """The conversation's title where the page shows it: the header and its sidebar entry."""
    context = {"conversation": conversation, "oob": True}
    return [
        render_to_string("chat/chat.html#conversation_title", context),
        render_to_string("chat/_sidebar_title.html", {"item": conversation, "oob": True}),
    ]


def deleted_frame() -> str:
    """What replaces a page's conversation once it is deleted (elsewhere, or in this tab)."""
    return render_to_string("chat/_deleted.html")
