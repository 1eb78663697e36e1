"""HTML sent over the socket: frames that append to a reply, replace a message, or talk to the composer.

Model output is untrusted: every piece of it that reaches a page is escaped
here or by the templates' autoescaping, so nothing it writes can add markup.
The markup itself lives in the templates (``chat/_message.html`` and the
partials of ``chat/chat.html``); only the per-token frame is built here, by
hand, because it is the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.template.loader import render_to_string
from django.utils.html import escape

from chat.models import Message


def delta_frame(message_id: int, text: str) -> str:
    """Append ``text`` to the ``m-<id>-body`` element of a streaming reply."""
    return f'<span id="m-{message_id}-body" hx-swap-oob="beforeend">{escape(text)}</span>'


def message_html(message: Message, *, oob: bool = False) -> str:
    return render_to_string("chat/_message.html", {"message": message, "oob": oob})


def message_frame(message: Message) -> str:
    """The whole message element, replacing the one on the page."""
    return message_html(message, oob=True)


def messages_appended_frame(messages: Iterable[Message]) -> str:
    """New messages, added at the end of the conversation on every subscribed page."""
    inner = "".join(message_html(message) for message in messages)
    return f'<div id="messages" hx-swap-oob="beforeend">{inner}</div>'


def composer_ack_frame(client_id: str) -> str:
    """Tell the sender its message is stored: a fresh idempotency key and no notice."""
    context = {"client_id": client_id, "notice": "", "oob": True}
    return render_to_string("chat/chat.html#client_id_field", context) + render_to_string(
        "chat/chat.html#composer_notice", context
    )


def notice_frame(text: str) -> str:
    """A plain-language notice under the composer (bad input, a refused send)."""
    return render_to_string("chat/chat.html#composer_notice", {"notice": text, "oob": True})
