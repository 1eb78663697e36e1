"""Template access to a message's rendered text (``chat.rendering.reply_html``)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from chat import rendering
from chat.models import Message

register = template.Library()


@register.simple_tag
def reply_html(message: Message) -> tuple[SafeString, SafeString]:
    """``{% reply_html message as html %}``: ``html.0`` is the answer, ``html.1`` the reasoning."""
    return rendering.reply_html(message)
