"""Frames: escaped, and never over Daphne's 1 MiB message cap however long the text."""

from __future__ import annotations

import html
import re

import pytest

from chat import rendering
from chat.models import Message

DAPHNE_CAP = 1024 * 1024


def body_text(frames: list[str], message_id: int) -> str:
    text = ""
    for frame in frames:
        for match in re.finditer(rf'id="m-{message_id}-body"[^>]*>(.*?)</(?:div|span)>', frame, re.S):
            text += html.unescape(match.group(1))
    return text


def test_delta_frame_escapes_markup_and_htmx_attributes():
    frame = rendering.delta_frame(5, '<img src=x onerror=alert(1)> <div hx-get="/x" hx-swap-oob="true">')
    assert "<img" not in frame and "<div" not in frame
    assert frame.startswith('<span id="m-5-body" hx-swap-oob="beforeend">&lt;img')


def test_long_deltas_are_split_under_the_cap():
    text = "'" * 450_000  # escaping makes each character six bytes
    frames = rendering.delta_frames(5, text)
    assert len(frames) == 5
    assert all(len(frame.encode()) < DAPHNE_CAP for frame in frames)
    assert body_text(frames, 5) == text


@pytest.mark.django_db
def test_a_huge_message_is_redrawn_in_frames_under_the_cap(alice_conversation):
    text = "<&>" * 700_000 + "end"
    huge = Message.objects.create(conversation=alice_conversation, role="assistant", content=text)
    small = Message.objects.create(conversation=alice_conversation, role="user", content="after", parent=huge)
    for frames in (
        rendering.branch_frames([huge, small]),
        rendering.messages_appended_frames([huge, small]),
        rendering.message_frames(huge),
    ):
        assert all(len(frame.encode()) < DAPHNE_CAP for frame in frames)
        assert body_text(frames, huge.pk) == text
    branch = rendering.branch_frames([huge, small])
    assert 'hx-swap-oob="innerHTML"' in branch[0]
    assert all('hx-swap-oob="innerHTML"' not in frame for frame in branch[1:])
    assert body_text(branch, small.pk) == "after"
    assert huge.content == text  # rendering left the message as it was


@pytest.mark.django_db
def test_an_empty_branch_still_clears_the_page():
    assert rendering.branch_frames([]) == ['<div id="messages" hx-swap-oob="innerHTML"></div>']
    assert rendering.messages_appended_frames([]) == []
