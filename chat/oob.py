"""Out-of-band swap frames that never exceed the socket's message limit, however much HTML they carry.

Daphne (autobahn) refuses to send a WebSocket message over 1 MiB. Most frames are far smaller; a
long reply redrawn whole, or one huge code block, is not. Such HTML is cut between top-level
elements into frames that each append to the same target. An element too large on its own goes
first as an empty shell carrying an id (its own, or ``<target>-<random>-<n>``: an id of ours, never the
model's), and its contents follow into it the same way, down to text, which is cut between
characters (never inside an entity).
"""

from __future__ import annotations

import itertools
import re
import secrets

MAX_FRAME_BYTES = 900 * 1024  # under Daphne's 1 MiB, with room for the wrapping element
VOID = frozenset({"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)\b[^>]*?(/?)>")
_ID = re.compile(r'\sid="([^"]*)"')


def frames(target: str, swap: str, markup: str, *, limit: int = MAX_FRAME_BYTES) -> list[str]:
    """``markup`` swapped into element ``target`` with ``swap``, in frames of at most ``limit`` bytes.

    ``swap`` applies to the first frame; the rest append (``beforeend``), or, for ``beforebegin``,
    insert before the target in turn, which keeps the order.
    """
    if len(markup) * 4 + 200 <= limit or _size(markup) + 200 <= limit:
        return [_frame(target, swap, markup)]
    counter = itertools.count(1)
    result: list[str] = []
    prefix = f"{target}-{secrets.token_hex(3)}"  # shells' ids: unique on the page, made only when needed
    _fill(result, target, swap, markup, prefix=prefix, counter=counter, limit=limit - 200)
    return result or [_frame(target, swap, "")]


def _frame(target: str, swap: str, markup: str) -> str:
    return f"<div {envelope(target, swap)}>{markup}</div>"


def envelope(target: str, swap: str) -> str:
    """The attributes of a frame's element. Unquoted: ids and swaps are ours (letters, digits,
    hyphens), and on frames sent dozens of times a second the quotes are a noticeable share."""
    return f"id={target} hx-swap-oob={swap}"


def _size(markup: str) -> int:
    return len(markup.encode("utf-8", "surrogatepass"))


def _fill(
    result: list[str],
    target: str,
    swap: str,
    markup: str,
    *,
    prefix: str,
    counter: itertools.count,
    limit: int,
) -> None:
    then = "beforebegin" if swap == "beforebegin" else "beforeend"
    chunk, size = [], 0

    def flush() -> None:
        nonlocal chunk, size, swap
        if chunk:
            result.append(_frame(target, swap, "".join(chunk)))
            chunk, size, swap = [], 0, then

    for node in _nodes(markup):
        node_size = _size(node)
        if node_size <= limit:
            if size + node_size > limit:
                flush()
            chunk.append(node)
            size += node_size
            continue
        flush()
        if node.startswith("<"):
            shell, inner, element_id = _shell(node, prefix, counter)
            result.append(_frame(target, swap, shell))
            swap = then
            _fill(result, element_id, "beforeend", inner, prefix=prefix, counter=counter, limit=limit)
        else:
            for piece in _text_pieces(node, limit):
                result.append(_frame(target, swap, piece))
                swap = then
    flush()


def _nodes(markup: str) -> list[str]:
    """``markup`` cut into its top-level nodes: elements (with their contents) and runs of text."""
    nodes: list[str] = []
    depth = 0
    node_start = 0
    for match in _TAG.finditer(markup):
        if depth == 0 and match.start() > node_start:
            nodes.append(markup[node_start : match.start()])
            node_start = match.start()
        closing, tag, self_closing = match.group(1), match.group(2).lower(), match.group(3)
        if closing:
            depth -= 1
        elif tag not in VOID and not self_closing:
            depth += 1
        if depth <= 0:
            depth = 0
            nodes.append(markup[node_start : match.end()])
            node_start = match.end()
    if node_start < len(markup):
        nodes.append(markup[node_start:])
    return nodes


def _shell(node: str, prefix: str, counter: itertools.count) -> tuple[str, str, str]:
    """An element as an empty shell with an id, its contents, and that id."""
    open_end = node.index(">") + 1
    open_tag = node[:open_end]
    close_start = node.rindex("</")
    found = _ID.search(open_tag)
    if found:
        element_id = found.group(1)
    else:
        element_id = f"{prefix}-{next(counter)}"
        open_tag = open_tag[:-1] + f' id="{element_id}">'
    return open_tag + node[close_start:], node[open_end:close_start], element_id


def _text_pieces(text: str, limit: int) -> list[str]:
    """Text cut into pieces of at most ``limit`` bytes, never inside an entity such as ``&amp;``."""
    pieces = []
    step = max(1, limit // 4)
    start = 0
    while start < len(text):
        end = min(len(text), start + step)
        amp = text.rfind("&", start, end)
        if amp > start and text.find(";", amp, end) < 0:
            end = amp
        pieces.append(text[start:end])
        start = end
    return pieces
