"""Reading other chat products' export files, one conversation at a time.

``read`` streams a file (Open WebUI's "Export chats" or ChatGPT's ``conversations.json``) and yields
neutral ``ImportedConversation``s (``tree``); ``openwebui`` and ``chatgpt`` each turn one of their
records into one. Storing them is the caller's business.

Errors are raised while iterating, at the conversation where the file goes wrong, as an
``ImportFormatError`` whose message can be shown to the user as it is. Conversations yielded before
it were fine, but a caller that wraps the whole import in one transaction gets all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import ijson

from chat.importers import chatgpt, native, openwebui
from chat.importers.tree import (
    ImportedConversation,
    ImportedMessage,
    ImportFormatError,
    branch_count,
    children_by_parent,
    path_to,
)

__all__ = [
    "ImportFormatError",
    "ImportedConversation",
    "ImportedMessage",
    "branch_count",
    "children_by_parent",
    "path_to",
    "read",
]

_FORMATS = {openwebui.SOURCE: openwebui, chatgpt.SOURCE: chatgpt, native.SOURCE: native}
_PRODUCT_NAMES = {openwebui.SOURCE: "Open WebUI", chatgpt.SOURCE: "ChatGPT", native.SOURCE: "this app"}
_NOT_AN_EXPORT = "This file is not an export from Open WebUI or ChatGPT"
_BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_CHUNK = 64 * 1024


def read(file: BinaryIO) -> Iterator[ImportedConversation]:
    """The conversations in an export file, in file order, holding one in memory at a time.

    The format is taken from the first record; every later record must be from the same product.
    A file holding an empty list yields nothing (the caller reports that no conversation was found).
    Raises ``ImportFormatError`` (lazily, while iterating) for anything else that is not an export.
    """
    reader = _CountingReader(file)
    start = reader.first_byte()
    if start == b"":
        raise ImportFormatError("The file is empty.")
    if start == b"<":
        raise ImportFormatError(
            "The file is a web page, not JSON. From a ChatGPT export, choose conversations.json "
            "rather than chat.html."
        )
    if start != b"[":
        _check_json(reader)
        what = "a JSON object" if start == b"{" else "a single JSON value"
        raise ImportFormatError(f"{_NOT_AN_EXPORT}: it is {what}, not a list of conversations.")
    source = None
    for number, record in enumerate(_records(reader), start=1):
        source = source or _first_source(record)
        yield _FORMATS[source].conversation_from_record(_checked(record, number, source), number=number)


def _first_source(record: object) -> str:
    if not isinstance(record, dict):
        raise ImportFormatError(f"{_NOT_AN_EXPORT}: it is a list of {_kind(record)}, not of conversations.")
    source = _source_of(record)
    if source is None:
        raise ImportFormatError(f"{_NOT_AN_EXPORT}: the items it lists are not conversations from either.")
    return source


def _checked(record: object, number: int, source: str) -> dict[str, Any]:
    """``record`` if it is a conversation from ``source``, the product the file began with."""
    if not isinstance(record, dict):
        raise ImportFormatError(f"Conversation {number} is not a conversation: it is not a JSON object.")
    found = _source_of(record)
    expected = _PRODUCT_NAMES[source]
    if found is None:
        raise ImportFormatError(f"Conversation {number} is not a conversation from {expected}.")
    if found != source:
        raise ImportFormatError(
            f"Conversation {number} is from {_PRODUCT_NAMES[found]}, but the file began with conversations "
            f"from {expected}. Import each product's export file on its own."
        )
    return record


def _source_of(record: dict[str, Any]) -> str | None:
    matches = [source for source, module in _FORMATS.items() if module.is_record(record)]
    return matches[0] if len(matches) == 1 else None


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false values"
    if isinstance(value, int | float):
        return "numbers"
    if isinstance(value, str):
        return "texts"
    if isinstance(value, list):
        return "lists"
    return "empty values"


def _records(reader: _CountingReader) -> Iterator[Any]:
    """The top-level list's items, whole, with the parser's failures worded for the user."""
    parsed = 0
    try:
        # Floats, not Decimals: times are the only fractional numbers, and datetime wants floats.
        for record in ijson.items(reader, "item", use_float=True):
            parsed += 1
            yield record
    except (ijson.JSONError, UnicodeDecodeError) as error:
        raise _invalid_json(reader, parsed) from error


def _check_json(reader: _CountingReader) -> None:
    """Parse the rest of a file whose top level is not a list, so broken JSON is reported as such."""
    try:
        for _event in ijson.basic_parse(reader):
            pass
    except (ijson.JSONError, UnicodeDecodeError) as error:
        raise _invalid_json(reader, 0) from error


def _invalid_json(reader: _CountingReader, parsed: int) -> ImportFormatError:
    if reader.at_end:
        return ImportFormatError(
            f"The file is not valid JSON: it ends in the middle (byte {reader.bytes_read:,}). "
            "It may have been cut short while downloading or copying."
        )
    if parsed:
        return ImportFormatError(
            f"The file is not valid JSON: something after conversation {parsed:,} breaks it."
        )
    return ImportFormatError("The file is not valid JSON.")


class _CountingReader:
    """The file as the parser reads it, remembering how far it got so errors can say where.

    A UTF-8 byte order mark, which some editors add when saving, is skipped.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._held = b""
        self.bytes_read = 0
        self.at_end = False

    def first_byte(self) -> bytes:
        """The first byte that is not whitespace (b"" for a blank file), without consuming the rest."""
        chunk = self._read_file(_CHUNK).removeprefix(_BYTE_ORDER_MARK)
        # Leading whitespace means nothing in JSON, so it need not be kept for the parser.
        while not (start := chunk.lstrip()) and not self.at_end:
            chunk = self._read_file(_CHUNK)
        self._held = start
        return start[:1]

    def read(self, size: int = -1) -> bytes:
        # The parser first asks for nothing, to learn whether the file gives bytes or text.
        if size == 0:
            return b""
        if self._held:
            held, self._held = self._held, b""
            return held
        return self._read_file(size)

    def _read_file(self, size: int) -> bytes:
        chunk = self._file.read(size)
        self.bytes_read += len(chunk)
        self.at_end = not chunk
        return chunk
