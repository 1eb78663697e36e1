"""Text every database stores: the one rule applied before text reaches a row or a page.

PostgreSQL text columns refuse NUL, and no database driver can encode a lone UTF-16 surrogate
(``"\\udead"`` in a JSON string, which servers emit when they cut a character in two). Either in a
reply would make every write of it fail. So both become U+FFFD REPLACEMENT CHARACTER, on every
database alike, the same way invalid UTF-8 bytes already do: the reader sees that something was
there, and what a page is shown is exactly what is stored.

A surrogate pair split across two pieces of a stream is joined again (``StorableStream``), so an
emoji cut between two chunks arrives whole.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_HIGH_SURROGATE = re.compile("[\ud800-\udbff]\\Z")


def storable(text: str) -> str:
    """``text`` with NUL and unpaired surrogates replaced by U+FFFD (adjacent pairs are joined)."""
    if _UNSTORABLE.search(text) is None:
        return text
    text = text.replace("\x00", REPLACEMENT)
    # Through UTF-16: adjacent high and low surrogates become the character they encode; any
    # surrogate left alone cannot be decoded and is replaced.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def is_storable(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def storable_json(value: Any) -> Any:
    """A JSON value with every string in it (keys too) made storable."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    if isinstance(value, dict):
        return {storable(str(key)): storable_json(item) for key, item in value.items()}
    return value


class StorableStream:
    """Make the pieces of one growing text storable, rejoining surrogate pairs cut between pieces.

    A piece that ends with a high surrogate keeps it back until the next piece says whether its
    other half follows; ``end`` gives up what is still held (as U+FFFD).
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        if self._held:
            piece, self._held = self._held + piece, ""
        elif _UNSTORABLE.search(piece) is None:
            return piece  # the common case: nothing to do
        if _HIGH_SURROGATE.search(piece):
            piece, self._held = piece[:-1], piece[-1]
        return storable(piece)

    def end(self) -> str:
        held, self._held = self._held, ""
        return storable(held)
