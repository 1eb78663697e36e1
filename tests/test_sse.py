"""Byte-level vectors for the event-stream decoder (WHATWG rules)."""

from __future__ import annotations

import pytest

from chat.sse import EventStreamDecoder, ServerSentEvent


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = EventStreamDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def datas(*chunks: bytes) -> list[str]:
    return [event.data for event in decode(*chunks)]


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_each_line_ending_ends_lines(ending):
    body = b"data: one" + ending + ending + b"data: two" + ending + ending
    assert datas(body) == ["one", "two"]


def test_mixed_line_endings_in_one_stream():
    assert datas(b"data: a\r\n\rdata: b\n\r\ndata: c\r\r") == ["a", "b", "c"]


def test_crlf_split_across_reads_is_one_line_ending():
    # Were the LF read as a second line ending, it would dispatch the event early
    # and then a blank line would follow.
    assert datas(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == ["a\nb"]


def test_every_split_of_a_stream_mixing_line_endings_decodes_alike():
    # Reads without a CR take a faster path than reads with one; a stream cut anywhere, so that
    # each kind of read follows each other kind, must give the events the whole stream gives.
    body = "data: a\r\ndata: é\n\nevent: x\rdata: b\r\r: note\ndata: c\n\r\ndata: d\n\n".encode()
    whole = decode(body)
    assert [event.data for event in whole] == ["a\né", "b", "c", "d"]
    for first in range(len(body)):
        for second in range(first, len(body)):
            assert decode(body[:first], body[first:second], body[second:]) == whole, (first, second)


def test_cr_at_end_of_read_followed_by_other_text_still_ends_the_line():
    assert datas(b"data: a\r", b"data: b\r\r") == ["a\nb"]


def test_one_leading_bom_is_ignored():
    assert datas(b"\xef\xbb\xbfdata: x\n\n") == ["x"]


def test_bom_split_across_reads_is_ignored():
    assert datas(b"\xef", b"\xbb", b"\xbfdata: x\n\n") == ["x"]


def test_only_the_first_bom_is_ignored():
    # A second BOM makes the field name "\ufeffdata", an unknown field.
    assert datas(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n") == ["y"]


def test_comment_lines_are_ignored():
    assert datas(b": keep-alive\n:\ndata: x\n: another\n\n") == ["x"]


def test_one_space_after_the_colon_is_removed_and_only_one():
    assert datas(b"data:  two spaces\n\n") == [" two spaces"]


def test_field_without_space_after_colon():
    assert datas(b"data:x\n\n") == ["x"]


def test_field_without_colon_has_empty_value():
    # "data" alone appends an empty line to the data buffer.
    assert datas(b"data\ndata\n\n") == ["\n"]


def test_multi_line_data_is_joined_with_lf():
    assert datas(b"data: first\ndata: second\ndata:third\n\n") == ["first\nsecond\nthird"]


def test_id_event_and_retry_fields_do_not_break_text():
    events = decode(b"id: 7\nevent: delta\nretry: 1500\ndata: text\n\ndata: more\n\n")
    assert [(e.event, e.data, e.id, e.retry) for e in events] == [
        ("delta", "text", "7", 1500),
        ("message", "more", "7", 1500),
    ]


def test_retry_with_non_digits_is_ignored():
    events = decode(b"retry: 12a\nretry: \ndata: x\n\n")
    assert events[0].retry is None


def test_id_with_null_is_ignored():
    events = decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [e.id for e in events] == ["1", "1"]


def test_unknown_fields_are_ignored():
    assert datas(b"foo: bar\ndata: x\nDATA: no\n\n") == ["x"]


def test_blank_line_without_data_dispatches_nothing_and_resets_event_type():
    events = decode(b"event: custom\n\ndata: x\n\n")
    assert [(e.event, e.data) for e in events] == [("message", "x")]


def test_empty_data_field_dispatches_an_empty_event():
    assert datas(b"data:\n\n") == [""]


def test_multibyte_utf8_split_across_reads_decodes():
    body = "data: héllo — 世界 🎉\n\n".encode()
    chunks = [body[i : i + 1] for i in range(len(body))]
    assert datas(*chunks) == ["héllo — 世界 🎉"]


def test_invalid_utf8_becomes_replacement_character():
    assert datas(b"data: a\xffb\n\n") == ["a\ufffdb"]


def test_event_is_not_dispatched_until_the_blank_line():
    decoder = EventStreamDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert [e.data for e in decoder.feed(b"\n")] == ["a"]


def test_end_returns_an_event_without_a_trailing_blank_line():
    decoder = EventStreamDecoder()
    assert decoder.feed(b"data: one\n\ndata: [DONE]") == [ServerSentEvent(data="one")]
    assert [e.data for e in decoder.end()] == ["[DONE]"]


def test_end_flushes_a_truncated_utf8_sequence_as_replacement():
    decoder = EventStreamDecoder()
    decoder.feed(b"data: \xe4\xb8")
    assert [e.data for e in decoder.end()] == ["\ufffd"]


def test_arcee_documented_example_is_one_multi_line_event():
    body = (
        b'data: {"choices": [{"delta": {"content": "Hello"}}]}\n'
        b'data: {"choices": [{"delta": {"content": "!"}}]}\n'
        b"...\n"
        b'data: {"choices": [{"delta": {"content": "?"}}]}\n'
        b"data: [DONE]\n"
    )
    decoder = EventStreamDecoder()
    assert decoder.feed(body) == []
    (event,) = decoder.end()
    assert event.data.splitlines()[-1] == "[DONE]"
    assert len(event.data.splitlines()) == 4


def test_an_error_field_dispatches_an_event_without_data():
    (event,) = decode(b"error: Model overloaded\n\n")
    assert (event.error, event.data) == ("Model overloaded", "")


def test_an_error_field_split_across_reads():
    (event,) = decode(b"err", b"or: over", b"loaded\r\n\r\n")
    assert event.error == "overloaded"


def test_invalid_utf8_inside_a_json_string_is_replaced_not_fatal():
    (event,) = decode(b'data: {"content": "ok\xff\xfe!"}\n\n')
    assert event.data == '{"content": "ok\ufffd\ufffd!"}'
