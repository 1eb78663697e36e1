"""Markdown rendered while it streams equals the whole text rendered at once, however it is cut.

The corpus is the CommonMark specification's examples plus markdown-it-py's fixtures for tables,
strikethrough, task lists, autolinks and hostile links (``tests/data/``). Each text is cut into
deltas at random points; the frames the page receives, applied the way htmx swaps them, must end
as exactly the whole text's HTML, and at every step equal what a page opening then is shown.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from chat import markdown, rendering
from chat.incremental import IncrementalMarkdown, snapshot
from tests.dom import Document, canonical

CORPUS = json.loads((Path(__file__).parent / "data" / "markdown_corpus.json").read_text())
TEXTS = [text for texts in CORPUS.values() for text in texts]
TRAPS = [
    "Foo\nbar\n---\n",  # a setext heading: the paragraph above becomes the heading
    "Foo\n\n---\n",  # a rule, not a heading
    "- a\n- b\n\n  c\n\nd\n",  # a loose list, continued after a blank line
    "> quote\nlazy continuation\n\nafter\n",
    "[foo] and [bar][]\n\ntext\n\n[foo]: /url\n[bar]: https://example.com 'T'\n",  # references defined later
    "```python\ndef f():\n\n    return '<b>'\n```\nafter\n",
    "```\nunclosed fence\n\nstill code\n",
    "    indented code\n\n    more code\npara\n",
    "| a | b |\n|---|--:|\n| 1 | 2 |\n| 3 | 4 |\n\ntext\n",
    "1. one\n2. two\n\n   continued\n3. three\n",
    "- [ ] todo\n- [x] done\n",
    "# Title\n\nSome *emphasis* and `code` and ~~gone~~ www.example.com\n",
    "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n",
    "para\n```\ncode\n```\n~~~~\n```\n~~~~\n",
    "a\n\n\n\nb\n  \n\t\nc",
]
texts = st.one_of(
    st.sampled_from(TEXTS + TRAPS),
    st.lists(st.sampled_from(TEXTS + TRAPS), min_size=2, max_size=5).map("\n".join),
    st.lists(st.sampled_from(TEXTS + TRAPS), min_size=2, max_size=5).map("".join),
)


@st.composite
def cut(draw, text_strategy=texts) -> tuple[str, list[str]]:
    """A text and the deltas it streams as (cut at random points, some deltas one character long)."""
    text = draw(text_strategy)
    points = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=40))))
    bounds = [0, *points, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def page_for(message_id: int) -> Document:
    tail = f'<div class="md-tail" id="m-{message_id}-tail"></div>'
    return Document(f'<div class="message-body" id="m-{message_id}-body">{tail}</div>')


@settings(max_examples=400)
@given(cut())
@example(("Foo\nbar\n---\n", ["Foo\n", "bar\n", "--", "-\n"]))
@example(("[x]\n\n[x]: /u\n", ["[x]\n", "\n", "[x]: /u\n"]))
def test_streamed_html_equals_the_whole_texts_html(case):
    text, deltas = case
    rendering_ = IncrementalMarkdown()
    pieces = []
    replaced = None
    for delta in deltas:
        pieces.append(rendering_.feed(delta).blocks)
    last = rendering_.end()
    if last.replace is not None:
        replaced = last.replace
    pieces.append(last.blocks)
    whole = markdown.render(text)
    assert (replaced if replaced is not None else "".join(pieces)) == whole
    assert rendering_.html() == whole


@settings(max_examples=200)
@given(cut())
def test_the_page_ends_as_the_whole_text_and_shows_what_a_joining_page_is_sent(case):
    text, deltas = case
    part = rendering.body_part(1)
    page = page_for(1)
    live = IncrementalMarkdown()
    for delta in deltas:
        for frame in rendering.update_frames(part, live.feed(delta)):
            page.apply(frame)
        assert page.html_of("m-1-body") == canonical(rendering.live_html(part, live))
    for frame in rendering.update_frames(part, live.end()):
        page.apply(frame)
    assert page.html_of("m-1-body") == canonical(markdown.render(text))
    at_once = snapshot(text)  # a page loaded from a checkpoint: the same text in one piece
    at_once.end()
    assert at_once.html() == markdown.render(text)


def _streamed(text: str, size: int) -> tuple[IncrementalMarkdown, int]:
    live = IncrementalMarkdown()
    part = rendering.body_part(1)
    sent = 0
    for start in range(0, len(text), size):
        sent += sum(
            len(frame) for frame in rendering.update_frames(part, live.feed(text[start : start + size]))
        )
    sent += sum(len(frame) for frame in rendering.update_frames(part, live.end()))
    return live, sent


def test_a_long_code_block_is_parsed_once_not_per_line():
    code = "".join(f"line_{i} = compute({i}) + '<tag>'\n" for i in range(5_000))
    text = f"Intro\n\n```python\n{code}```\n\nOutro\n"
    live, _ = _streamed(text, 12)
    assert live.html() == markdown.render(text)
    assert live.work < 3 * len(text)


def test_work_and_bytes_are_linear_in_the_length_of_a_long_reply():
    section = (
        "## Section\n\nA paragraph with **bold**, `code` and a [link](https://example.com).\n"
        "It goes on for a second line.\n\n- one\n- two\n- three\n\n```js\nconst x = 1;\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n> a quote\n\n"
    )
    work_per_character = []
    for sections in (50, 200):
        text = section * sections
        live, _ = _streamed(text, 5)
        assert live.html() == markdown.render(text)
        work_per_character.append(live.work / len(text))
        # Frames of a few tokens each, as the coalescing window makes them: bytes within twice the HTML.
        live, sent = _streamed(text, 40)
        assert sent <= 2 * len(live.html())
    assert work_per_character[1] <= 1.05 * work_per_character[0] < 5


def test_a_long_list_is_not_parsed_again_for_every_item():
    text = "".join(f"- item {i} with some words\n" for i in range(2_000)) + "\nafter\n"
    live, _ = _streamed(text, 8)
    assert live.html() == markdown.render(text)
    assert live.work < 12 * len(text)


def test_an_open_fence_shows_plain_lines_then_the_highlighted_block():
    live = IncrementalMarkdown()
    live.feed("```python\n")
    update = live.feed("x = '<b>'\n")
    assert update.code and update.append == "x = '<b>'\n"
    assert live.tail is not None and live.tail.language == "python"
    closing = live.feed("```\n")
    assert '<span class="s1">' in closing.blocks and "&lt;b&gt;" in closing.blocks
    assert closing.tail is not None and closing.tail.language is None


def test_a_paragraph_renders_when_a_blank_line_follows_it():
    live = IncrementalMarkdown()
    assert live.feed("Some **bold** words\n").blocks == ""
    assert live.feed("\n").blocks == "<p>Some <strong>bold</strong> words</p>\n"
