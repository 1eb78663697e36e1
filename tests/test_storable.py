"""The one rule for text before it is stored: NUL and lone surrogates become U+FFFD, pairs are joined."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.storable import REPLACEMENT, StorableStream, is_storable, storable, storable_json
from chat.upstream import ReasoningDelta, TextDelta, Usage, parse_chunk
from chat.upstream.events import StreamTexts
from tests.fuzzing import any_text


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain text, “quotes” and 😀", "plain text, “quotes” and 😀"),
        ("a\x00b", f"a{REPLACEMENT}b"),
        ("cut \ud83d!", f"cut {REPLACEMENT}!"),
        ("\udead", REPLACEMENT),
        ("\ude00\ud83d", REPLACEMENT * 2),  # halves in the wrong order are no pair
        ("joined \ud83d\ude00", "joined 😀"),  # two code points that make a pair become the character
        ("", ""),
    ],
)
def test_storable_replaces_what_no_database_takes(text, stored):
    assert storable(text) == stored


@given(any_text)
def test_storable_text_encodes_as_utf8_without_nul(text):
    stored = storable(text)
    assert "\x00" not in stored
    stored.encode("utf-8")  # raises on any surrogate left
    assert is_storable(stored)
    assert storable(stored) == stored


@given(any_text)
def test_storable_leaves_text_without_nul_or_surrogates_alone(text):
    if is_storable(text):
        assert storable(text) is text


@given(st.lists(any_text, max_size=8))
def test_a_stream_of_pieces_stores_what_the_whole_text_stores(pieces):
    stream = StorableStream()
    out = "".join(stream.feed(piece) for piece in pieces) + stream.end()
    assert out == storable("".join(pieces))


def test_a_surrogate_pair_cut_between_pieces_arrives_whole():
    stream = StorableStream()
    assert stream.feed("emoji \ud83d") == "emoji "
    assert stream.feed("\ude00!") == "😀!"
    assert stream.end() == ""


def test_a_high_surrogate_at_the_very_end_is_replaced():
    stream = StorableStream()
    assert stream.feed("cut \ud83d") == "cut "
    assert stream.end() == REPLACEMENT


def test_storable_json_cleans_keys_and_nested_strings():
    value = {"a\x00": ["\udead", {"k": "v\x00"}], "n": 1, "f": 1.5, "b": True, "z": None}
    assert storable_json(value) == {
        f"a{REPLACEMENT}": [REPLACEMENT, {"k": f"v{REPLACEMENT}"}],
        "n": 1,
        "f": 1.5,
        "b": True,
        "z": None,
    }


def test_stream_texts_keep_text_and_reasoning_apart_and_storable():
    texts = StreamTexts()
    events = [
        *texts.feed(ReasoningDelta("think \ud83e")),
        *texts.feed(TextDelta("say\x00 \ud83d")),
        *texts.feed(ReasoningDelta("\udd14")),
        *texts.feed(TextDelta("\ude00")),
        *texts.end(),
    ]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert text == f"say{REPLACEMENT} 😀"
    assert reasoning == "think 🤔"


def test_stream_texts_still_route_a_leading_think_block():
    texts = StreamTexts()
    events = [*texts.feed(TextDelta("<think>hm\x00</think>\n\nAnswer")), *texts.end()]
    assert events == [ReasoningDelta(f"hm{REPLACEMENT}"), TextDelta("Answer")]


def test_a_finish_reason_is_made_storable_and_cut_to_its_column():
    (finish,) = parse_chunk({"choices": [{"delta": {}, "finish_reason": "x\x00" + "y" * 100}]})
    assert finish.reason == f"x{REPLACEMENT}" + "y" * 38


def test_token_counts_no_column_holds_are_not_counts():
    (usage,) = parse_chunk({"choices": [], "usage": {"prompt_tokens": 2**31, "completion_tokens": 7}})
    assert usage == Usage(prompt_tokens=None, completion_tokens=7, total_tokens=None)
