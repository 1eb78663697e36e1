"""The deterministic text the simulator streams (the reply, the reasoning) and the usage it counts."""

from __future__ import annotations

import itertools
import re
from typing import Any

_TOKEN_RE = re.compile(r"\s*\S+")
_QUOTE_CHARS = 60
_FILLER = (
    "The simulator streams its replies a word at a time, at a steady pace, so you can watch an answer "
    "arrive. It does not understand your message; it only repeats the start of it. To talk to a real "
    "model, set CHAT_API_BASE and CHAT_API_KEY and restart the server — until then, the rest of the app "
    "works as usual."
)
_FILLER_TOKENS = tuple(_TOKEN_RE.findall("\n\n" + _FILLER))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI "content parts"
        return " ".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def reply_tokens(messages: list[dict], count: int) -> list[str]:
    """The demo reply as exactly ``count`` word pieces (each with its leading whitespace).

    Deterministic so tests can compare the streamed text exactly; it says plainly that no model
    is connected, because this is what a person trying the app offline reads. The curly quotes
    and the dash put multi-byte UTF-8 on the wire early.
    """
    if count <= 0:
        return []
    said = " ".join(_last_user_text(messages).split())
    if len(said) > _QUOTE_CHARS:
        said = said[: _QUOTE_CHARS - 1].rstrip() + "…"
    echo = f"You wrote: “{said}”." if said else "Your message was empty."
    intro = (
        "This is the offline demo: no language model is connected, so the built-in simulator is answering. "
        + echo
    )
    tokens = _TOKEN_RE.findall(intro)[:count]
    filler = itertools.cycle(_FILLER_TOKENS)
    while len(tokens) < count:
        tokens.append(next(filler))
    return tokens


def reply_text(messages: list[dict], count: int) -> str:
    """The text that ``reply_tokens`` streams, for comparing with what a client assembled."""
    return "".join(reply_tokens(messages, count))


_MARKDOWN = """## What the simulator can show

This reply is **Markdown**, written to exercise the page: *emphasis*, `inline code`, a
[link](https://example.com/docs) and ~~struck text~~.

1. A numbered list
2. with a second item
   - and a nested bullet

> A quote, which may run
> over two lines.

```python
def greet(name: str) -> str:
    \"\"\"Say hello.\"\"\"
    return f"Hello, {name}!"
```

| Model | Tokens/s | Note |
|:------|--------:|------|
| demo  | 200 | simulated |
| other | 50 | slower |

- [x] rendered on the server
- [ ] re-rendered in the browser

"""
_passage = _TOKEN_RE.findall(_MARKDOWN)
_MARKDOWN_TOKENS = (*_passage[:-1], _passage[-1] + "\n\n")  # the blank line before it repeats


_HOSTILE = """# A hostile reply

<script>window.pwned = "script tag"</script>

<img src=x onerror="window.pwned = 'img onerror'">

[a javascript: link](javascript:window.pwned='markdown link') and
<a href="javascript:window.pwned='html link'">an HTML link</a>

<svg onload="window.pwned = 'svg'"><script>window.pwned = 'svg script'</script></svg>

<div hx-get="/admin/" hx-trigger="load" hx-swap-oob="true" id="messages">htmx attributes</div>

<span id="m-1-body" hx-swap-oob="innerHTML">taken over</span> <span id="m-2-body">same id</span>

<iframe src="https://example.com"></iframe> <form action="/c/new/"><input name="text"></form>

![a tracking pixel](https://tracker.example/pixel.gif) <!-- a comment --> <b>an unclosed tag

<style>body { display: none }</style>
<p style="position:fixed;inset:0" onclick="window.pwned='click'">cover</p>

```html
<script>window.pwned = "inside a code block is only text"</script>
```

"""
_hostile = _TOKEN_RE.findall(_HOSTILE)
_HOSTILE_TOKENS = (*_hostile[:-1], _hostile[-1] + "\n\n")


def hostile_tokens(count: int) -> list[str]:
    """``style=hostile``: Markdown and HTML that try to run script or reach outside the reply, repeated."""
    sample = itertools.cycle(_HOSTILE_TOKENS)
    return [next(sample) for _ in range(max(0, count))]


def markdown_tokens(count: int) -> list[str]:
    """``style=markdown``: a fixed Markdown passage (headings, lists, code, a table), repeated.

    Whitespace, newlines included, stays with the word after it, so the text keeps its lines.
    """
    sample = itertools.cycle(_MARKDOWN_TOKENS)
    return [next(sample) for _ in range(max(0, count))]


_REASONING = (
    "Let me think about this. No language model is connected, so these thoughts are the simulator's "
    "stand-in: a fixed passage streamed before the answer, so the app can show thinking apart from the "
    "reply — and prove that it does."
)
_REASONING_TOKENS = tuple(_TOKEN_RE.findall(_REASONING))
_REASONING_AGAIN = tuple(_TOKEN_RE.findall(" " + _REASONING))


def reasoning_tokens(count: int) -> list[str]:
    """The reasoning streamed by ``reasoning-<n>``, ``reasoning-field-<n>`` and ``think-<n>``, as n pieces.

    Deterministic and independent of the messages, so tests can compare what a client collected
    as "thinking"; the dash puts multi-byte UTF-8 in it too.
    """
    if count <= 0:
        return []
    tokens = list(_REASONING_TOKENS[:count])
    again = itertools.cycle(_REASONING_AGAIN)
    while len(tokens) < count:
        tokens.append(next(again))
    return tokens


def reasoning_text(count: int) -> str:
    """The text that ``reasoning_tokens`` streams, for comparing with what a client assembled."""
    return "".join(reasoning_tokens(count))


def _think_pieces(count: int) -> list[str]:
    """``<think>``, the reasoning, ``</think>`` and a blank line, with both tags cut across chunks.

    A client that looks for a whole tag in one chunk misses them; one that buffers finds them.
    """
    reasoning = reasoning_tokens(count)
    if not reasoning:
        return ["<thi", "nk></th", "ink>\n\n"]
    pieces = ["<thi", "nk>" + reasoning[0], *reasoning[1:]]
    pieces[-1] += "</th"
    pieces.append("ink>\n\n")
    return pieces


def _prompt_tokens(messages: list[dict]) -> int:
    return sum(len(_content_text(m.get("content")).split()) for m in messages if isinstance(m, dict))
