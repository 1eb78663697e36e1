"""Fitting a conversation's history into the model's context window.

A server refuses a request longer than its model's context window, so before a reply is asked
for, the oldest turns are left out until the rest fits, and the reply records how many were left
out (the page says so under it). Pure: it reads nothing and knows no model; callers pass the
window (``chat.providers.reply_target``) and the history (``chat.selectors.reply_history``).

Token counts here are estimates, never a tokenizer's, and lean high: ASCII letters and
whitespace count a token per 3.5 characters, other ASCII (digits, punctuation, symbols) a token
per 1.5, and everything else a token per 2 bytes of UTF-8 (so a Chinese or Japanese character is
1.5 tokens, an emoji 2), plus ``MESSAGE_OVERHEAD`` per message for its role and separators.
Against a real BPE tokenizer (cl100k) that over-counts English prose by about 1.4x, code and
Markdown by 1.3-1.6x, CJK by 1.3-1.5x and emoji by a little: the request may be shorter than it
could be, not longer. Random identifiers (base64, hex digests) tokenize worse than the estimate
assumes; the share of the window kept for the reply absorbs such a miss in all but extreme
cases, and past that the server's own error is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

_WORD_BYTES = bytes(range(ord("a"), ord("z") + 1)) + bytes(range(ord("A"), ord("Z") + 1)) + b" \t\n\r"
_ASCII = bytes(range(128))
MESSAGE_OVERHEAD = 4  # tokens a message costs besides its text (role, start and end markers)
REPLY_PRIMING = 3  # tokens every request costs once (the start of the assistant's answer)
REPLY_SHARE = 4  # without max_tokens, a quarter of the window is kept for the reply ...
REPLY_RESERVE_MAX = 4096  # ... up to this many tokens


def estimate_tokens(text: str) -> int:
    """At least as many tokens as ``text`` takes in common tokenizers (see the module's note).

    Counted on the UTF-8 bytes with ``bytes.translate``, so a megabyte costs milliseconds.
    """
    encoded = text.encode("utf-8", "surrogatepass")
    size = len(encoded)
    ascii_bytes = size - len(encoded.translate(None, _ASCII))
    word_bytes = size - len(encoded.translate(None, _WORD_BYTES))
    other_ascii = ascii_bytes - word_bytes
    # In integer sixths: word / 3.5 + other ASCII / 1.5 + the rest / 2, rounded up.
    sixths = word_bytes * 12 // 7 + other_ascii * 4 + (size - ascii_bytes) * 3
    return -(-sixths // 6)


def message_tokens(message: dict[str, str]) -> int:
    return estimate_tokens(message.get("content") or "") + MESSAGE_OVERHEAD


def reply_reserve(context_length: int, max_tokens: int | None) -> int:
    """Tokens kept free for the reply: its ``max_tokens`` when set, else a share of the window."""
    if max_tokens:
        return max_tokens
    return min(REPLY_RESERVE_MAX, context_length // REPLY_SHARE)


@dataclass(frozen=True)
class Fitted:
    """The messages that go upstream, and how many of the history's were left out to fit."""

    messages: list[dict[str, str]]
    omitted: int
    estimated_tokens: int  # of ``messages``, by ``estimate_tokens``

    @property
    def notice(self) -> str:
        return omitted_notice(self.omitted)


def omitted_notice(omitted: int) -> str:
    """What the page says under a reply whose request left out ``omitted`` messages ("" for none)."""
    if omitted <= 0:
        return ""
    if omitted == 1:
        return "1 earlier message was not sent: the conversation is longer than the model's context window."
    return (
        f"{omitted} earlier messages were not sent: the conversation is longer than the model's "
        "context window."
    )


def fit(messages: Sequence[dict[str, str]], *, context_length: int, max_tokens: int | None = None) -> Fitted:
    """Keep the system messages and the newest message, then whole turns, newest first, that fit.

    A turn is a user message with the replies that follow it, so what is kept never starts with
    an assistant's reply to a question that was left out. Turns are dropped oldest first and what
    is kept is contiguous: a short old turn never jumps the queue past a long newer one.

    If the system messages and the newest message alone are over the budget they are sent all
    the same: the server then answers with its own error, which the reply shows, and the user can
    shorten the message or start a new conversation.
    """
    system = [m for m in messages if m.get("role") == "system"]
    history = [m for m in messages if m.get("role") != "system"]
    if not history:
        return Fitted(list(system), 0, _total(system))
    budget = context_length - reply_reserve(context_length, max_tokens) - REPLY_PRIMING
    used = _total(system) + message_tokens(history[-1])
    kept_from = len(history) - 1
    for start, end in reversed(_turns(history[:-1])):
        cost = _total(history[start:end])
        if used + cost > budget:
            break
        used += cost
        kept_from = start
    return Fitted([*system, *history[kept_from:]], kept_from, used)


def _total(messages: Sequence[dict[str, str]]) -> int:
    return sum(message_tokens(m) for m in messages)


def _turns(history: Sequence[dict[str, str]]) -> list[tuple[int, int]]:
    """``(start, end)`` of each turn: a new one begins at every user message."""
    bounds: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(history) + 1):
        if index == len(history) or history[index].get("role") == "user":
            bounds.append((start, index))
            start = index
    return bounds if history else []
