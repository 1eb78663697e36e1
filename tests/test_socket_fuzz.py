"""Any frame a page (or anyone holding its cookie) can send gets an answer, and the socket stays usable.

Every action with arbitrary field values, frames that are not JSON objects, binary and empty frames,
frames up to Daphne's size limit and arbitrary ``?since=`` query strings, against the simulator on
loopback: no frame closes the socket or crashes the consumer, nothing is logged as broken, every
reply a frame started ends, and a message that was accepted is stored as it was sent (made storable).
"""

from __future__ import annotations

import json
import uuid

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from hypothesis import example, given
from hypothesis import strategies as st

from chat import streaming, turns
from chat.models import Message
from chat.routing import websocket_urlpatterns
from chat.storable import storable
from tests.factories import stored_turn
from tests.fuzzing import any_text, broken_things, fuzz, json_values

pytestmark = pytest.mark.django_db(transaction=True)

ACTIONS = ["send", "regenerate", "edit", "switch", "stop", "", "SEND", " stop"]
DAPHNE_FRAME_LIMIT = 1024 * 1024


def fields_of(message_ids: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """A request object: the known fields with arbitrary values (or plausible ones), plus strangers."""
    known = st.fixed_dictionaries(
        {},
        optional={
            "action": st.sampled_from(ACTIONS) | json_values,
            "text": any_text | json_values,
            "model": st.sampled_from(["demo?tokens=2", "", "p999:demo", "p1:", " demo "]) | json_values,
            "client_id": st.builds(lambda: str(uuid.uuid4())) | json_values,
            "message_id": message_ids | json_values,
            "HEADERS": json_values,
        },
    )
    return st.builds(
        lambda fields, extra: {**extra, **fields}, known, st.dictionaries(any_text, json_values, max_size=2)
    )


def frames_of(message_ids: st.SearchStrategy) -> st.SearchStrategy[str | bytes]:
    return st.one_of(
        fields_of(message_ids).map(lambda fields: json.dumps(fields)),
        json_values.map(json.dumps),  # JSON that is not an object
        any_text,  # not JSON at all (and the empty frame)
        st.binary(max_size=64),
    )


@pytest.fixture
def conversation(alice_conversation, upstream):
    alice_conversation.model = "demo?tokens=2"
    alice_conversation.save()
    stored_turn(alice_conversation, "First question", "First answer")
    stored_turn(alice_conversation, "Second question", "Second answer")
    return alice_conversation


def connect(user, conversation, query: bytes = b"") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/c/{conversation.pk}/")
    communicator.scope["user"] = user
    communicator.scope["query_string"] = query
    return communicator


async def exchange(user, conversation, frame: str | bytes, query: bytes = b"") -> list[str]:
    """Open a page, send ``frame``, let what it started end; return the answer. Fails if the socket broke."""
    communicator = connect(user, conversation, query)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    try:
        await drain(communicator)  # the snapshot
        kind = "bytes" if isinstance(frame, bytes) else "text"
        await communicator.send_input({"type": "websocket.receive", kind: frame})
        answer = [await communicator.receive_from(timeout=10)]  # every frame is answered
        await streaming.wait_all()
        answer += await drain(communicator)
        # Still usable: a plain request gets its plain answer.
        await communicator.send_json_to({"action": "stop"})
        probe = await communicator.receive_from(timeout=5)
        assert turns.NOTHING_TO_STOP in probe, probe
        return answer
    finally:
        await communicator.disconnect()


async def drain(communicator: WebsocketCommunicator) -> list[str]:
    frames = []
    while not await communicator.receive_nothing(timeout=0.05):
        frames.append(await communicator.receive_from())
    return frames


@fuzz(max_examples=150)
@given(data=st.data())
def test_every_frame_is_answered_and_the_socket_stays_usable(alice, conversation, runner, data):
    ids = list(Message.objects.filter(conversation=conversation).values_list("id", flat=True))
    message_ids = st.sampled_from(ids) | st.sampled_from(ids).map(str)
    frame = data.draw(frames_of(message_ids))
    before = set(Message.objects.values_list("id", flat=True))
    with broken_things() as broken:
        answer = runner.run(exchange(alice, conversation, frame))
    assert not broken.records, broken.describe()
    assert answer
    assert not Message.objects.filter(status=Message.Status.STREAMING).exists()
    fields = _json_object(frame)
    if fields is not None and any('id="client-id"' in f for f in answer):  # a message was accepted
        sent = Message.objects.filter(role="user").exclude(id__in=before).first()
        assert sent is not None
        assert sent.content == storable(fields["text"]).replace("\r\n", "\n")


@pytest.mark.parametrize(
    "frame",
    [
        json.dumps({"action": ["send"]}),
        json.dumps({"action": {"a": 1}, "text": "hi"}),
        json.dumps({"text": "lone \ud83d surrogate"}),
        json.dumps({"text": "nul \x00 here"}),
        json.dumps({"text": "x" * (DAPHNE_FRAME_LIMIT - 20)}),
        json.dumps({"action": "switch", "message_id": 10**400}),
        json.dumps({"action": "switch", "message_id": "1" * 5000}),
        json.dumps({"action": "regenerate", "message_id": 2**63}),
        json.dumps({"model": "demo\x00"}),
        "[" * 100_000,
        '{"text": ' + "1" * 10_000 + "}",
        "",
        b"\x00\xff",
    ],
    ids=lambda frame: repr(frame[:30]),
)
def test_frames_that_once_broke_or_could_break_the_socket(alice, conversation, runner, frame):
    with broken_things() as broken:
        answer = runner.run(exchange(alice, conversation, frame))
    assert not broken.records, broken.describe()
    assert answer


def test_a_text_with_a_lone_surrogate_is_stored_and_answered(alice, conversation, runner):
    frame = json.dumps({"text": "lone \ud83d surrogate and nul \x00", "client_id": str(uuid.uuid4())})
    answer = runner.run(exchange(alice, conversation, frame))
    assert any('id="client-id"' in f for f in answer)
    stored = Message.objects.filter(role="user").latest("id")
    assert stored.content == "lone \ufffd surrogate and nul \ufffd"


@fuzz()
@given(
    query=st.binary(max_size=40)
    | any_text.map(lambda text: b"since=" + text.encode("utf-8", "surrogatepass"))
)
@example(query=b"since=" + "²".encode())
@example(query=b"since=" + b"9" * 5000)
def test_any_query_string_opens_the_page(alice, conversation, runner, query):
    with broken_things() as broken:
        runner.run(exchange(alice, conversation, json.dumps({"action": "stop"}), query=query))
    assert not broken.records, broken.describe()


def _json_object(frame: str | bytes) -> dict | None:
    if isinstance(frame, bytes) or not frame:
        return None
    try:
        fields = json.loads(frame)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None
