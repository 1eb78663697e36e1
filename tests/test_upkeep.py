"""Checkpoints of many replies in one statement (``services.replies_checkpoint``)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from chat import services
from chat.models import Conversation, Message


def streaming_reply(owner, title: str) -> Message:
    conversation = Conversation.objects.create(owner=owner, title=title, model="demo")
    turn = services.message_post(conversation=conversation, text=title, model="demo", worker="w")
    return turn.reply


def test_one_statement_renews_every_lease_and_sets_each_grown_text(alice, django_assert_num_queries):
    grown, quiet, thinking = (streaming_reply(alice, name) for name in ("grown", "quiet", "thinking"))
    done = streaming_reply(alice, "done")
    Message.objects.filter(pk=done.pk).update(status=Message.Status.COMPLETE, content="final")
    Message.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    checkpoints = [
        services.Checkpoint(grown.pk, "text so far"),
        services.Checkpoint(quiet.pk, None),
        services.Checkpoint(thinking.pk, "answer", "a thought"),
        services.Checkpoint(done.pk, "must not land"),
    ]
    with django_assert_num_queries(1):
        assert services.replies_checkpoint(checkpoints) == 3
    rows = {m.pk: m for m in Message.objects.filter(role="assistant")}
    now = timezone.now()
    for reply in (grown, quiet, thinking):
        assert rows[reply.pk].lease_expires_at > now
    assert (rows[grown.pk].content, rows[grown.pk].reasoning) == ("text so far", "")
    assert rows[quiet.pk].content == ""
    assert (rows[thinking.pk].content, rows[thinking.pk].reasoning) == ("answer", "a thought")
    assert rows[done.pk].content == "final" and rows[done.pk].lease_expires_at < now


def test_nothing_to_write_is_no_statement(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert services.replies_checkpoint([]) == 0


def test_many_replies_go_in_statements_of_a_bounded_size(alice, monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(services, "CHECKPOINTS_PER_STATEMENT", 2)
    replies = [streaming_reply(alice, f"reply {n}") for n in range(5)]
    with django_assert_num_queries(3):
        updated = services.replies_checkpoint([services.Checkpoint(r.pk, f"text {r.pk}") for r in replies])
    assert updated == 5
    for reply in replies:
        reply.refresh_from_db()
        assert reply.content == f"text {reply.pk}"
