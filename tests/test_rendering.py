"""Frames: escaped or sanitized, and never over Daphne's 1 MiB message cap however long the text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat import markdown, rendering
from chat.incremental import Tail, Update
from chat.models import Message
from tests.dom import Document, canonical, visible_text

DAPHNE_CAP = 1024 * 1024
PAGE = '<div id="messages"></div>'


def _without_shell_ids(markup: str) -> str:
    return re.sub(r' id="[a-z0-9-]+-[0-9a-f]{6}-\d+"', "", markup)


def test_appended_text_escapes_markup_and_htmx_attributes():
    part = rendering.body_part(5)
    (frame,) = rendering.update_frames(part, Update(append='<img src=x onerror=alert(1)> <div hx-get="/x">'))
    assert "<img" not in frame and "<div hx-get" not in frame
    assert frame.startswith("<span id=m-5-tail hx-swap-oob=beforeend>&lt;img")


@given(st.text())
def test_tail_text_reads_back_as_itself_and_never_opens_a_tag(text):
    escaped = rendering.escape_text(text)
    assert "<" not in escaped
    assert visible_text(f"<span>{escaped}</span>") == text


def test_tail_text_leaves_quotes_as_they_are():
    assert rendering.escape_text("""say "hi" & 'bye' <b>""") == """say "hi" &amp; 'bye' &lt;b&gt;"""


def test_an_open_fence_shows_its_code_and_appends_into_it():
    part = rendering.body_part(5)
    page = Document('<div id="m-5-body"><div id="m-5-tail"></div></div>')
    for frame in rendering.update_frames(part, Update(tail=Tail("x = 1\n", language="python"))):
        page.apply(frame)
    for frame in rendering.update_frames(part, Update(append="y = <2>", code=True)):
        page.apply(frame)
    code = page.element("m-5-code")
    assert code is not None and code.text() == "x = 1\ny = <2>"
    assert "python" in page.text_of("m-5-tail")


def test_long_appends_are_split_under_the_cap():
    text = "&" * 450_000  # escaping makes each character five bytes
    frames = rendering.update_frames(rendering.body_part(5), Update(append=text))
    assert len(frames) == 5
    assert all(len(frame.encode()) < DAPHNE_CAP for frame in frames)
    page = Document('<div id="m-5-body"><div id="m-5-tail"></div></div>')
    for frame in frames:
        page.apply(frame)
    assert page.text_of("m-5-tail") == text


def test_a_huge_block_is_inserted_in_frames_under_the_cap():
    source = "```python\n" + "".join(f"v{i} = {i} & {i}\n" for i in range(25_000)) + "```\n"
    blocks = markdown.render(source)
    assert len(blocks.encode()) > DAPHNE_CAP
    frames = rendering.update_frames(rendering.body_part(5), Update(blocks=blocks, ended=True))
    assert all(len(frame.encode()) < DAPHNE_CAP for frame in frames)
    page = Document('<div id="m-5-body"><div id="m-5-tail"></div></div>')
    for frame in frames:
        page.apply(frame)
    assert _without_shell_ids(page.html_of("m-5-body")) == canonical(blocks)


@pytest.mark.django_db
def test_a_huge_message_is_redrawn_in_frames_under_the_cap(alice_conversation):
    text = "<&>" * 100_000 + "\n\n" + "".join(f"- item {i} *em*\n" for i in range(3_000)) + "\nend"
    huge = Message.objects.create(conversation=alice_conversation, role="assistant", content=text)
    small = Message.objects.create(conversation=alice_conversation, role="user", content="after", parent=huge)
    expected = canonical(markdown.render(text))
    for frames in (
        rendering.branch_frames([huge, small]),
        rendering.messages_appended_frames([huge, small]),
    ):
        assert all(len(frame.encode()) < DAPHNE_CAP for frame in frames)
        page = Document(PAGE)
        for frame in frames:
            page.apply(frame)
        assert _without_shell_ids(page.html_of(f"m-{huge.pk}-body")) == expected
        assert page.text_of(f"m-{small.pk}-body") == "after"
    branch = rendering.branch_frames([huge, small])
    assert "hx-swap-oob=innerHTML" in branch[0]
    assert all("id=messages hx-swap-oob=innerHTML" not in frame for frame in branch[1:])

    huge.status = Message.Status.STREAMING
    page = Document(PAGE)
    for frame in rendering.messages_appended_frames([huge]):
        page.apply(frame)
    for frame in rendering.message_frames(huge):
        assert len(frame.encode()) < DAPHNE_CAP
        page.apply(frame)
    assert visible_text(page.html_of(f"m-{huge.pk}-body")).startswith("<&>" * 1000)
    assert huge.content == text  # rendering left the message as it was


@pytest.mark.django_db
def test_an_empty_branch_still_clears_the_page():
    assert rendering.branch_frames([]) == ["<div id=messages hx-swap-oob=innerHTML></div>"]
    assert rendering.messages_appended_frames([]) == []


@pytest.mark.django_db
def test_a_user_message_is_shown_as_typed_never_as_markdown(alice_conversation):
    message = Message(conversation=alice_conversation, role="user", content="# not a heading <b>", pk=7)
    assert (
        '<div class="message-body" id="m-7-body"># not a heading &lt;b&gt;</div>'
        in rendering.message_html(message)
    )
