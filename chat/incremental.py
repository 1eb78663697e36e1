"""Markdown rendered while it streams: finished blocks rendered once, an open tail shown as text.

A reply is a list of finished top-level blocks plus one open tail. A block is finished when nothing
that can follow may change it: the text is parsed only up to its last complete line (an unfinished
line could still turn a paragraph into a heading), and every block but the last one of that parse
is finished, because later lines can only extend the last block or start new ones (lazy
continuation, a setext underline, a list's next item all belong to the last block). A fenced code
block is finished by its closing fence; while it is open its lines are shown as plain text in a
``<pre><code>`` and nothing is parsed again, so a 5,000-line block costs one pass. The tail is
parsed again only when a line completes, and it holds one block.

Each block is rendered once (``markdown.render_block``) and appended once, so work and bytes are
linear in the reply's length, and the finished HTML equals rendering the whole text at once. One
trap is settled at the end instead: a link reference defined after a block that uses it. Blocks
holding ``[`` are remembered; if the final references render one of them differently, the whole
HTML is sent again, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chat import markdown

_LEADING_BLANK_LINES = re.compile(r"(?:[ \t]*\n)+")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})([^\n]*)\n")


@dataclass(frozen=True, slots=True)
class Tail:
    """What the page shows after the finished blocks: raw text, or the code of an open fence."""

    text: str = ""
    language: str | None = None  # not None: an open fenced code block in this language ("" if none)


@dataclass(frozen=True, slots=True)
class Update:
    """What a page must do, in this order, to show the text as it now stands."""

    blocks: str = ""  # finished HTML, inserted before the tail
    tail: Tail | None = None  # the tail's new contents (None: unchanged)
    append: str = ""  # raw text added to the tail (to its code when it is an open fence)
    code: bool = False  # the tail is an open fence: ``append`` goes into its code
    ended: bool = False  # the tail is gone: the blocks are the whole text
    replace: str | None = None  # the whole HTML, replacing everything (references defined late)

    def __bool__(self) -> bool:
        return bool(
            self.blocks or self.tail is not None or self.append or self.ended or self.replace is not None
        )


class IncrementalMarkdown:
    """The rendering of one growing text (a reply's answer, or its reasoning)."""

    __slots__ = (
        "_blocks",
        "_bracketed",
        "_closing",
        "_ended",
        "_language",
        "_line",
        "_parsed_lines",
        "_pieces",
        "_references",
        "_shown",
        "_tail_lines",
        "work",
    )

    def __init__(self) -> None:
        self._blocks: list[str] = []  # HTML of the finished blocks
        self._pieces: list[str] = []  # the open tail's source
        self._line = ""  # the tail's last line, not complete yet
        self._closing: re.Pattern[str] | None = None  # while a fence is open: its closing line
        self._language = ""  # the open fence's language
        self._references: dict[str, Any] = {}
        self._bracketed: list[tuple[int, str, int]] = []  # (block index, source, references known)
        # The page's tail: its language, where in the tail's source it starts, and its length.
        self._shown: tuple[str | None, int, int] = (None, 0, 0)
        self._ended = False
        self._tail_lines = 0  # complete lines in the open tail
        self._parsed_lines = 0  # how many there were when it was last parsed
        self.work = 0  # characters parsed or rendered so far: linear in the text's length

    # --- reading ------------------------------------------------------------------------------

    def html(self) -> str:
        """The finished HTML: the whole text's once ``end`` was called."""
        if len(self._blocks) > 1 and not self._bracketed:
            self._blocks[:] = ["".join(self._blocks)]
        return "".join(self._blocks)

    @property
    def tail(self) -> Tail | None:
        """What the page shows after the finished blocks; None once the text has ended."""
        return None if self._ended else self._view(self._source())[0]

    # --- writing ------------------------------------------------------------------------------

    def feed(self, delta: str) -> Update:
        """Take the next piece of the text; return what the page must do."""
        if not delta or self._ended:
            return Update()
        self._pieces.append(delta)
        newline = delta.rfind("\n")
        if newline < 0:  # no line completed: nothing can finish, the tail only grows
            self._line += delta
            return self._grow(delta)
        lines = (self._line + delta[:newline]).split("\n")
        self._line = delta[newline + 1 :]
        self._tail_lines += len(lines)
        if self._closing is not None:
            if not any(self._closing.fullmatch(line) for line in lines):
                return self._grow(delta)  # an open fence: its code grows, nothing to parse
        elif self._tail_lines - self._parsed_lines < max(1, self._parsed_lines // 8):
            # A long open block (a list, a table) is parsed again only after it grew by an eighth:
            # finishing it a few lines late keeps the work linear, and changes nothing else.
            return self._grow(delta)
        return self._settle()

    def end(self) -> Update:
        """The text is complete: render what is left and settle the references."""
        if self._ended:
            return Update()
        self._ended = True
        source = self._source()
        self._pieces, self._closing = [], None
        blocks = self._finish(source) if source.strip() else ""
        if self._references_came_late():
            return Update(replace=self.html())
        return Update(blocks=blocks, ended=True)

    # --- inside ---------------------------------------------------------------------------------

    def _source(self) -> str:
        if len(self._pieces) > 1:
            self._pieces[:] = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    def _grow(self, delta: str) -> Update:
        language, start, length = self._shown
        self._shown = (language, start, length + len(delta))
        return Update(append=delta, code=language is not None)

    def _settle(self) -> Update:
        """A line completed: finish every block that can no longer change, then show the rest."""
        source = self._source()
        finished = []
        consumed = 0  # characters of the source finished here
        while True:
            if self._closing is not None:
                end = self._fence_end(source)
                if end is None:
                    break
                self._closing = None
            else:
                complete = source[: source.rfind("\n") + 1]
                self.work += len(complete)
                blocks = _blocks(complete)
                starts = [start for start, _, _ in blocks]
                if starts and starts[0] > 0:  # blank lines or link references before the first block
                    end = _offset(complete, starts[0])
                elif len(starts) > 1:
                    end = _offset(complete, starts[-1])
                elif (blank := _blank_line_after(complete, blocks)) is not None:
                    end = blank  # a blank line after it: nothing can join it any more
                elif starts and (fence := _FENCE_OPEN.match(complete)) and _opens_fence(complete):
                    marker = fence.group(1)
                    self._closing = re.compile(rf" {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*")
                    self._language = fence.group(2).strip().split(" ")[0].lstrip("`~")
                    continue  # its closing line may be here already
                else:
                    break
            finished.append(self._finish(source[:end]))
            consumed += end
            source = source[end:]
        self._pieces = [source] if source else []
        self._tail_lines = self._parsed_lines = source.count("\n")
        view, view_start = self._view(source)
        shown, self._shown = self._shown, (view.language, view_start, len(view.text))
        if blocks := "".join(finished):
            return Update(blocks=blocks, tail=view)
        # Nothing to show came to an end (blank lines before the tail, which the page never showed):
        # the tail the page has may still be this one, only counted from further on.
        language, start, length = shown
        if view.language == language and view_start + consumed == start and len(view.text) >= length:
            if len(view.text) == length:
                return Update()
            return Update(append=view.text[length:], code=view.language is not None)
        return Update(tail=view)

    def _fence_end(self, source: str) -> int | None:
        """Where the open fence's block ends (after its closing line), or None while it is open."""
        assert self._closing is not None
        start = source.find("\n") + 1  # after the opening line
        while (end := source.find("\n", start)) >= 0:
            if self._closing.fullmatch(source, start, end):
                return end + 1
            start = end + 1
        return None

    def _finish(self, source: str) -> str:
        self.work += len(source)
        known = len(self._references)
        html = markdown.render_block(source, self._references)
        if "[" in source:
            self._bracketed.append((len(self._blocks), source, known))
        self._blocks.append(html)
        return html

    def _references_came_late(self) -> bool:
        """Render again the blocks that a reference defined after them changes; True if any changed."""
        changed = False
        for index, source, known in self._bracketed:
            if known < len(self._references):
                again = markdown.render_block(source, dict(self._references))
                if again != self._blocks[index]:
                    self._blocks[index] = again
                    changed = True
        return changed

    def _view(self, source: str) -> tuple[Tail, int]:
        """What the page shows of the tail, and where in the tail's source that starts."""
        if self._closing is not None:
            start = source.find("\n") + 1
            return Tail(text=source[start:], language=self._language), start
        blank = _LEADING_BLANK_LINES.match(source)
        start = blank.end() if blank else 0
        return Tail(text=source[start:]), start


# Blocks that a blank line ends for good (a list or an indented code block goes on after one).
_ENDED_BY_A_BLANK_LINE = frozenset({"paragraph_open", "heading_open", "blockquote_open", "table_open", "hr"})


def _blocks(complete: str) -> list[tuple[int, str, int]]:
    """Each top-level block of ``complete`` (whole lines only): its first line, its kind, its end line."""
    env: dict[str, Any] = {}
    tokens = markdown.block_parser().parse(complete, env)
    return [(token.map[0], token.type, token.map[1]) for token in tokens if token.level == 0 and token.map]


def _blank_line_after(complete: str, blocks: list[tuple[int, str, int]]) -> int | None:
    """Where the blank line after a lone block of a kind that a blank line ends starts, if there is one."""
    if len(blocks) != 1 or blocks[0][1] not in _ENDED_BY_A_BLANK_LINE:
        return None
    end_line = blocks[0][2]
    if end_line >= complete.count("\n"):
        return None
    start = _offset(complete, end_line)
    line_end = complete.index("\n", start)
    return start if not complete[start:line_end].strip(" \t") else None


def _offset(text: str, line: int) -> int:
    """Where line ``line`` (from 0) of ``text`` starts."""
    offset = 0
    for _ in range(line):
        offset = text.index("\n", offset) + 1
    return offset


def _opens_fence(complete: str) -> bool:
    """True if the first line of ``complete`` opens a fenced code block, as markdown-it reads it."""
    tokens = markdown.block_parser().parse(complete[: complete.find("\n") + 1], {})
    return bool(tokens) and tokens[0].type == "fence"


def snapshot(text: str) -> IncrementalMarkdown:
    """The rendering a page shows for ``text`` so far, as if it had streamed."""
    rendering = IncrementalMarkdown()
    rendering.feed(text)
    return rendering
