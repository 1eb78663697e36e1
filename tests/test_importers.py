"""Reading export files from Open WebUI and ChatGPT into neutral conversation trees.

``tests/importer_samples/`` holds a real Open WebUI 0.12.4 export and a ChatGPT ``conversations.json``
built to that export's published shape; the other cases are built here, each showing one rule.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.importers import (
    ImportedConversation,
    ImportedMessage,
    ImportFormatError,
    branch_count,
    children_by_parent,
    path_to,
    read,
)
from chat.importers.tree import SourceNode, assemble

SAMPLES = Path(__file__).parent / "importer_samples"
OPEN_WEBUI_SAMPLE = SAMPLES / "open-webui-0.12.4-export.json"
CHATGPT_SAMPLE = SAMPLES / "chatgpt-conversations.json"


def read_file(path: Path) -> list[ImportedConversation]:
    with path.open("rb") as file:
        return list(read(file))


def read_records(records: Any) -> list[ImportedConversation]:
    return list(read(io.BytesIO(json.dumps(records).encode())))


def read_until_error(raw: bytes) -> tuple[list[ImportedConversation], str]:
    """The conversations read before the error, and the error's message."""
    conversations = []
    with pytest.raises(ImportFormatError) as caught:
        conversations.extend(read(io.BytesIO(raw)))
    return conversations, str(caught.value)


def by_key(conversation: ImportedConversation) -> dict[str, ImportedMessage]:
    return {message.key: message for message in conversation.messages}


def current_roles(conversation: ImportedConversation) -> list[str]:
    messages = by_key(conversation)
    return [messages[key].role for key in path_to(conversation, conversation.current_key)]


def sample_records(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))


def webui_record(
    messages: list[tuple[str, str | None, str, Any]], *, current: str | None, title: str = "Hand-made"
):
    """An Open WebUI record from (key, parent, role, content) rows; children follow the rows' order."""
    history = {
        key: {
            "id": key,
            "parentId": parent,
            "childrenIds": [child for child, child_parent, _, _ in messages if child_parent == key],
            "role": role,
            "content": content,
            "timestamp": 1796411565,
        }
        for key, parent, role, content in messages
    }
    return {"title": title, "chat": {"history": {"currentId": current, "messages": history}}, "created_at": 1}


def gpt_text(role: str, *parts: Any, **metadata: Any) -> dict[str, Any]:
    return gpt_message(role, {"content_type": "text", "parts": list(parts)}, **metadata)


def gpt_message(role: str, content: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"author": {"role": role}, "content": content, "metadata": metadata, "create_time": None}


def gpt_record(
    nodes: list[tuple[str, str | None, dict | None]], *, current: str | None, title: str = "Hand-made"
):
    """A ChatGPT record from (key, parent, message) rows; children follow the rows' order."""
    mapping = {
        key: {
            "id": key,
            "message": message,
            "parent": parent,
            "children": [child for child, child_parent, _ in nodes if child_parent == key],
        }
        for key, parent, message in nodes
    }
    return {
        "title": title,
        "create_time": None,
        "update_time": None,
        "mapping": mapping,
        "current_node": current,
    }


# Open WebUI sample


def test_open_webui_sample_gives_each_chat_with_its_title_and_messages():
    conversations = read_file(OPEN_WEBUI_SAMPLE)

    assert [(c.title, len(c.messages), c.source) for c in conversations] == [
        ("A table and a function?", 2, "open-webui"),
        ("Think first, then greet me.", 2, "open-webui"),
        ("Show me some Markdown, please.", 4, "open-webui"),
    ]


def test_open_webui_sample_chats_are_straight_and_end_at_the_shown_message():
    conversations = read_file(OPEN_WEBUI_SAMPLE)

    assert [branch_count(c) for c in conversations] == [1, 1, 1]
    assert [current_roles(c) for c in conversations] == [
        ["user", "assistant"],
        ["user", "assistant"],
        ["user", "assistant", "user", "assistant"],
    ]
    markdown_chat = conversations[2]
    assert markdown_chat.current_key == "55025653-c699-4e06-82f9-495b26ed454b"
    assert path_to(markdown_chat, markdown_chat.current_key) == tuple(m.key for m in markdown_chat.messages)
    assert markdown_chat.messages[0].parent_key is None


def test_open_webui_sample_times_are_aware_utc_from_seconds():
    markdown_chat = read_file(OPEN_WEBUI_SAMPLE)[2]

    assert markdown_chat.created_at == datetime(2026, 12, 4, 19, 12, 45, tzinfo=UTC)
    assert markdown_chat.updated_at == datetime(2026, 12, 4, 19, 12, 49, tzinfo=UTC)
    assert [m.created_at.second for m in markdown_chat.messages] == [45, 45, 49, 49]
    assert all(m.created_at.utcoffset().total_seconds() == 0 for m in markdown_chat.messages)


def test_open_webui_sample_models_are_on_the_assistant_messages():
    conversations = read_file(OPEN_WEBUI_SAMPLE)

    assert [[m.model for m in c.messages] for c in conversations] == [
        ["", "qwen2.5-coder:7b"],
        ["", "qwen3:8b"],
        ["", "llama3.1:8b", "", "llama3.1:8b"],
    ]


def test_open_webui_reasoning_in_output_is_kept_apart_from_the_answer():
    greeting = read_file(OPEN_WEBUI_SAMPLE)[1].messages[1]

    assert greeting.content == "Hello! How can I help you today?"
    assert greeting.reasoning == "The user wants a greeting."


def test_open_webui_sample_keeps_markdown_and_unicode_as_written():
    conversations = read_file(OPEN_WEBUI_SAMPLE)

    assert conversations[0].messages[1].content.endswith("| name | value |\n|---|---|\n| pi | 3.14 |")
    assert conversations[0].messages[1].reasoning == ""
    assert conversations[2].messages[2].content == "And some code — ünïcödé too 😀"


# ChatGPT sample


def test_chatgpt_sample_keeps_only_the_messages_chatgpt_shows():
    conversations = read_file(CHATGPT_SAMPLE)

    assert [(c.title, len(c.messages), c.source) for c in conversations] == [
        ("Reverse a list", 6, "chatgpt"),
        ("Rain haiku", 2, "chatgpt"),
    ]


def test_chatgpt_edited_message_gives_two_branches_in_the_source_order():
    reverse = read_file(CHATGPT_SAMPLE)[0]

    assert branch_count(reverse) == 2
    assert children_by_parent(reverse)["1354026d-139e-4061-b1f8-86ac1d788a50"] == (
        "a7b36f84-04de-4954-be0e-7ce58d457ba5",
        "93f39695-c812-4563-814f-c61df1384d19",
    )
    positions = {message.key: index for index, message in enumerate(reverse.messages)}
    assert all(positions[m.parent_key] < positions[m.key] for m in reverse.messages if m.parent_key)


def test_chatgpt_current_path_is_the_branch_that_was_shown():
    reverse, haiku = read_file(CHATGPT_SAMPLE)

    assert path_to(reverse, reverse.current_key) == (
        "dec81ba0-ea99-4234-bc42-b5a228843f07",
        "1354026d-139e-4061-b1f8-86ac1d788a50",
        "93f39695-c812-4563-814f-c61df1384d19",
        "e15a74f2-fbc3-494b-bed5-09a4f8831070",
    )
    assert current_roles(reverse) == ["user", "assistant", "user", "assistant"]
    assert current_roles(haiku) == ["user", "assistant"]


def test_chatgpt_code_interpreter_keeps_the_code_and_drops_its_output():
    messages = by_key(read_file(CHATGPT_SAMPLE)[0])

    code = messages["20164349-c54b-4ad2-aa49-caf33c30792e"]
    assert code.role == "assistant"
    assert code.content == "```\nitems = [1, 2, 3]\nprint(items[::-1])\n```"
    assert code.parent_key == "a7b36f84-04de-4954-be0e-7ce58d457ba5"
    assert "44de7959-b69c-4a16-8766-09ce84431784" not in messages  # the tool's execution output
    assert all(m.role != "tool" and "[3, 2, 1]\n" not in m.content for m in messages.values())


def test_chatgpt_hidden_system_node_and_empty_root_are_spliced_out():
    reverse = read_file(CHATGPT_SAMPLE)[0]
    keys = {m.key for m in reverse.messages}

    assert "client-created-root" not in keys
    assert "ef9b6c54-c18b-44cd-b37c-da67fd25057c" not in keys
    first = reverse.messages[0]
    assert (first.key, first.parent_key, first.role) == ("dec81ba0-ea99-4234-bc42-b5a228843f07", None, "user")


def test_chatgpt_multimodal_message_keeps_its_text_and_marks_the_image():
    screenshot = by_key(read_file(CHATGPT_SAMPLE)[0])["93f39695-c812-4563-814f-c61df1384d19"]

    assert screenshot.content == "[image]\n\nWhat about this screenshot?"


def test_chatgpt_float_times_become_aware_utc_with_microseconds():
    reverse = read_file(CHATGPT_SAMPLE)[0]

    assert reverse.created_at == datetime(2024, 5, 29, 16, 26, 40, 123456, tzinfo=UTC)
    assert reverse.updated_at == datetime(2024, 5, 29, 16, 36, 40, 123456, tzinfo=UTC)
    assert reverse.messages[1].created_at == datetime(2024, 5, 29, 16, 26, 45, 123456, tzinfo=UTC)


def test_chatgpt_model_comes_from_the_model_slug():
    reverse, haiku = read_file(CHATGPT_SAMPLE)

    assert [m.model for m in reverse.messages] == ["", "gpt-4o", "", "gpt-4o", "", "gpt-4o"]
    assert [m.model for m in haiku.messages] == ["", "gpt-4o-mini"]


# Open WebUI, hand-made


def test_open_webui_regenerated_replies_are_siblings_in_children_order():
    record = webui_record(
        [
            ("q", None, "user", "Hi"),
            ("first", "q", "assistant", "Hello"),
            ("second", "q", "assistant", "Hey"),
        ],
        current="first",
    )
    record["chat"]["history"]["messages"]["q"]["childrenIds"] = ["second", "first"]

    (conversation,) = read_records([record])

    assert children_by_parent(conversation)["q"] == ("second", "first")
    assert [m.key for m in conversation.messages] == ["q", "second", "first"]
    assert branch_count(conversation) == 2
    assert conversation.current_key == "first"


def test_open_webui_reasoning_details_block_is_moved_out_of_the_content():
    content = (
        '<details type="reasoning" done="true" duration="2">\n<summary>Thought for 2 seconds</summary>\n'
        "> Greet them.\n> Keep it short.\n</details>\nHello!"
    )
    record = webui_record([("q", None, "user", content), ("a", "q", "assistant", content)], current="a")

    (conversation,) = read_records([record])

    assert conversation.messages[1].content == "Hello!"
    assert conversation.messages[1].reasoning == "Greet them.\nKeep it short."
    assert conversation.messages[0].content == content  # a user's text is never taken apart


def test_open_webui_answer_found_only_in_output_is_the_content():
    record = webui_record([("q", None, "user", "Hi"), ("a", "q", "assistant", "")], current="a")
    record["chat"]["history"]["messages"]["a"]["output"] = [
        {
            "type": "message",
            "content": [{"type": "output_text", "text": "Hel"}, {"type": "output_text", "text": "lo"}],
        }
    ]

    (conversation,) = read_records([record])

    assert conversation.messages[1].content == "Hello"


def test_open_webui_content_that_is_not_text_is_refused():
    record = webui_record([("q", None, "user", {"text": "Hi"})], current="q", title="Odd")

    _, message = read_until_error(json.dumps([record]).encode())

    assert message == 'Conversation 1 ("Odd") has a message whose content is not text.'


def test_open_webui_record_without_history_is_named_by_place_and_title():
    records = [*sample_records(OPEN_WEBUI_SAMPLE)[:1], {"title": "Lost history", "chat": {"models": []}}]

    read_before, message = read_until_error(json.dumps(records).encode())

    assert len(read_before) == 1
    assert message == 'Conversation 2 ("Lost history") is incomplete: its message history is missing.'


# ChatGPT, hand-made


def test_chatgpt_code_block_is_tagged_and_fenced_past_backticks_inside():
    code = {"content_type": "code", "language": "python", "text": 'doc = """\n```\n"""'}
    record = gpt_record(
        [("q", None, gpt_text("user", "Go")), ("c", "q", gpt_message("assistant", code))], current="c"
    )

    (conversation,) = read_records([record])

    assert conversation.messages[1].content == '````python\ndoc = """\n```\n"""\n````'


def test_chatgpt_unknown_content_keeps_its_string_parts_or_is_left_out():
    quote = {"content_type": "tether_quote", "parts": ["Quoted words", {"x": 1}]}
    browsing = {"content_type": "tether_browsing_display", "result": "..."}
    record = gpt_record(
        [
            ("q", None, gpt_text("user", "Look it up")),
            ("quote", "q", gpt_message("assistant", quote)),
            ("browse", "quote", gpt_message("assistant", browsing)),
            ("answer", "browse", gpt_text("assistant", "Found it")),
        ],
        current="answer",
    )

    (conversation,) = read_records([record])

    assert [(m.key, m.parent_key, m.content) for m in conversation.messages] == [
        ("q", None, "Look it up"),
        ("quote", "q", "Quoted words"),
        ("answer", "quote", "Found it"),
    ]


def test_chatgpt_parts_are_paragraphs_and_transcripts_count_as_text():
    voice = gpt_text(
        "user",
        "One",
        {"content_type": "audio_transcription", "text": "Two"},
        {"content_type": "audio_asset_pointer"},
    )
    (conversation,) = read_records([gpt_record([("v", None, voice)], current="v")])

    assert conversation.messages[0].content == "One\n\nTwo"


def test_chatgpt_visible_system_message_is_kept_and_empty_one_dropped():
    record = gpt_record(
        [
            ("s1", None, gpt_text("system", "")),
            ("s2", "s1", gpt_text("system", "Be brief.")),
            ("q", "s2", None),
        ],
        current="q",
    )

    (conversation,) = read_records([record])

    assert [(m.key, m.parent_key, m.role) for m in conversation.messages] == [("s2", None, "system")]


def test_chatgpt_current_node_left_out_gives_its_nearest_kept_ancestor():
    output = {"content_type": "execution_output", "text": "42"}
    record = gpt_record(
        [
            ("q", None, gpt_text("user", "Compute")),
            ("code", "q", gpt_message("assistant", {"content_type": "code", "text": "6 * 7"})),
            ("out", "code", gpt_message("tool", output)),
        ],
        current="out",
    )

    (conversation,) = read_records([record])

    assert conversation.current_key == "code"


@pytest.mark.parametrize("current", [None, "no-such-node"])
def test_chatgpt_current_node_absent_or_unknown_gives_the_newest_branch(current):
    record = gpt_record(
        [
            ("q", None, gpt_text("user", "Hi")),
            ("old", "q", gpt_text("assistant", "Hello")),
            ("new", "q", gpt_text("assistant", "Hey")),
            ("after-old", "old", gpt_text("user", "Thanks")),
        ],
        current=current,
    )

    (conversation,) = read_records([record])

    assert conversation.current_key == "new"


def test_chatgpt_part_that_is_not_text_is_refused():
    record = gpt_record([("q", None, gpt_text("user", "Hi", 42))], current="q", title="Numbers")

    _, message = read_until_error(json.dumps([record]).encode())

    assert message == 'Conversation 1 ("Numbers") has a message with a part that is not text.'


def test_conversation_with_nothing_shown_has_no_messages_and_no_current():
    (conversation,) = read_records([gpt_record([("root", None, None)], current="root")])

    assert conversation.messages == ()
    assert conversation.current_key is None


# Broken trees, in both formats


def broken_webui(links: list[tuple[str, str | None]]) -> dict[str, Any]:
    return webui_record([(key, parent, "user", key) for key, parent in links], current=None, title="Broken")


def broken_gpt(links: list[tuple[str, str | None]]) -> dict[str, Any]:
    return gpt_record(
        [(key, parent, gpt_text("user", key)) for key, parent in links], current=None, title="Broken"
    )


@pytest.mark.parametrize("record_from_links", [broken_webui, broken_gpt])
def test_missing_parent_is_reported_with_the_conversation_number_and_title(record_from_links):
    good = record_from_links([("a", None)])
    good["title"] = "Fine"

    read_before, message = read_until_error(json.dumps([good, record_from_links([("a", "gone")])]).encode())

    assert [c.title for c in read_before] == ["Fine"]
    assert message == 'Conversation 2 ("Broken") has a message whose parent is missing.'


@pytest.mark.parametrize("record_from_links", [broken_webui, broken_gpt])
@pytest.mark.parametrize("links", [[("root", None), ("a", "b"), ("b", "a")], [("a", "a")]])
def test_parent_links_in_a_loop_are_reported_not_followed(record_from_links, links):
    _, message = read_until_error(json.dumps([record_from_links(links)]).encode())

    assert message == 'Conversation 1 ("Broken") has messages whose parent links go round in a circle.'


def test_child_listed_twice_or_not_at_all_is_imported_once():
    record = gpt_record(
        [
            ("q", None, gpt_text("user", "Hi")),
            ("a", "q", gpt_text("assistant", "A")),
            ("b", "q", gpt_text("assistant", "B")),
        ],
        current="a",
    )
    record["mapping"]["q"]["children"] = ["b", "b"]  # "a" is forgotten, "b" listed twice

    (conversation,) = read_records([record])

    assert [m.key for m in conversation.messages] == ["q", "b", "a"]


def test_repeated_id_in_a_file_keeps_its_last_entry_as_json_does():
    raw = (
        b'[{"title": "Twice", "mapping": {"q": {"parent": null, "message": null},'
        b' "q": {"parent": null, "message": {"author": {"role": "user"},'
        b' "content": {"content_type": "text", "parts": ["Second"]}}}}}]'
    )

    (conversation,) = list(read(io.BytesIO(raw)))

    assert [(m.key, m.content) for m in conversation.messages] == [("q", "Second")]


@st.composite
def source_trees(draw: st.DrawFn) -> dict[str, SourceNode]:
    """Random forests in a random key order, some nodes left out; keys are "n<index>"."""
    size = draw(st.integers(min_value=1, max_value=25))
    parents = [draw(st.integers(min_value=-1, max_value=index - 1)) for index in range(size)]
    kept = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    order = draw(st.permutations(range(size)))
    nodes = {}
    for index in order:
        key = f"n{index}"
        message = ImportedMessage(key=key, parent_key=None, role="user", content=key) if kept[index] else None
        children = tuple(f"n{child}" for child in range(size) if parents[child] == index)
        parent_key = f"n{parents[index]}" if parents[index] >= 0 else None
        nodes[key] = SourceNode(parent_key=parent_key, children_keys=children, message=message)
    return nodes


@given(source_trees())
def test_assembled_messages_put_parents_first_and_skip_left_out_ancestors(nodes):
    messages, current_key = assemble(nodes, current_key=None, label="Conversation 1")

    def nearest_kept_ancestor(key: str) -> str | None:
        parent = nodes[key].parent_key
        while parent is not None and nodes[parent].message is None:
            parent = nodes[parent].parent_key
        return parent

    assert {m.key for m in messages} == {key for key, node in nodes.items() if node.message is not None}
    seen: set[str] = set()
    for message in messages:
        assert message.parent_key == nearest_kept_ancestor(message.key)
        assert message.parent_key is None or message.parent_key in seen
        seen.add(message.key)
    assert (current_key is None) == (not messages)
    assert current_key is None or all(m.parent_key != current_key for m in messages)


# The file as a whole


@pytest.mark.parametrize(
    "raw",
    [b"Hello, this is a letter.", b"[{'title': 'single quotes'}]", b"[] trailing", b'["\xff"]'],
)
def test_text_that_is_not_json_is_refused_in_plain_words(raw):
    _, message = read_until_error(raw)

    assert message.startswith("The file is not valid JSON")
    assert "right here" not in message and "\n" not in message


def test_garbage_after_a_conversation_says_where():
    raw = json.dumps(sample_records(CHATGPT_SAMPLE)[:1]).encode()[:-1] + b", nonsense]"

    read_before, message = read_until_error(raw)

    assert len(read_before) == 1
    assert message == "The file is not valid JSON: something after conversation 1 breaks it."


def test_file_cut_in_the_middle_gives_what_came_before_then_says_where_it_ends():
    cut = OPEN_WEBUI_SAMPLE.read_bytes()[: OPEN_WEBUI_SAMPLE.stat().st_size // 2]

    read_before, message = read_until_error(cut)

    assert [c.title for c in read_before] == ["A table and a function?"]
    assert message == (
        f"The file is not valid JSON: it ends in the middle (byte {len(cut):,}). "
        "It may have been cut short while downloading or copying."
    )


def test_errors_wait_for_iteration():
    conversations = read(io.BytesIO(b"not json"))

    with pytest.raises(ImportFormatError):
        next(conversations)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "The file is empty."),
        (b"  \n ", "The file is empty."),
        (
            b'{"conversations": []}',
            "This file is not an export from Open WebUI or ChatGPT: it is a JSON object, "
            "not a list of conversations.",
        ),
        (
            b'"a string"',
            "This file is not an export from Open WebUI or ChatGPT: it is a single JSON value, "
            "not a list of conversations.",
        ),
        (
            b"[1, 2, 3]",
            "This file is not an export from Open WebUI or ChatGPT: it is a list of numbers, "
            "not of conversations.",
        ),
        (
            b'[{"name": "Ada", "email": "ada@example.com"}]',
            "This file is not an export from Open WebUI or ChatGPT: the items it lists are not "
            "conversations from either.",
        ),
        (b'{"conversations": [', "The file is not valid JSON: it ends in the middle (byte 19)."),
    ],
)
def test_files_that_are_not_exports_say_what_they_are(raw, message):
    _, said = read_until_error(raw)

    assert said.startswith(message)


def test_web_page_points_to_conversations_json():
    _, message = read_until_error(b"<!DOCTYPE html><html><body>chat</body></html>")

    assert "choose conversations.json rather than chat.html" in message


def test_formats_cannot_be_mixed_in_one_file():
    records = [sample_records(OPEN_WEBUI_SAMPLE)[0], sample_records(CHATGPT_SAMPLE)[0]]

    read_before, message = read_until_error(json.dumps(records).encode())

    assert [c.source for c in read_before] == ["open-webui"]
    assert message == (
        "Conversation 2 is from ChatGPT, but the file began with conversations from Open WebUI. "
        "Import each product's export file on its own."
    )


def test_later_record_of_an_unknown_shape_is_named_by_its_place():
    records = [*sample_records(CHATGPT_SAMPLE), {"title": "Notes"}, 7]

    read_before, message = read_until_error(json.dumps(records).encode())

    assert len(read_before) == 2
    assert message == "Conversation 3 is not a conversation from ChatGPT."


def test_empty_list_yields_no_conversation():
    assert list(read(io.BytesIO(b" [ ] "))) == []


def test_byte_order_mark_from_an_editor_is_skipped():
    raw = b"\xef\xbb\xbf" + CHATGPT_SAMPLE.read_bytes()

    assert [c.title for c in read(io.BytesIO(raw))] == ["Reverse a list", "Rain haiku"]


# Memory

GENERATED_CONVERSATIONS = 3000


def generated_record(number: int) -> dict[str, Any]:
    text = f"Conversation {number}: " + "a longer paragraph of ordinary words " * 12
    nodes = [("root", None, None)]
    for turn in range(8):
        role = "user" if turn % 2 == 0 else "assistant"
        nodes.append((f"m{turn}", nodes[-1][0], gpt_text(role, text, model_slug="gpt-4o")))
    return gpt_record(nodes, current="m7", title=f"Generated {number}")


def test_reading_a_large_file_holds_one_conversation_at_a_time(tmp_path):
    path = tmp_path / "conversations.json"
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for number in range(GENERATED_CONVERSATIONS):
            out.write("," if number else "")
            json.dump(generated_record(number), out)
        out.write("]")
    file_size = path.stat().st_size

    tracemalloc.start()
    try:
        count = 0
        with path.open("rb") as file:
            for conversation in read(file):
                count += 1
                last = (conversation.title, len(conversation.messages))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (count, last) == (GENERATED_CONVERSATIONS, (f"Generated {GENERATED_CONVERSATIONS - 1}", 8))
    assert file_size > 10_000_000
    assert peak < file_size / 5
    assert peak < 30_000_000
