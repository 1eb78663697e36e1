"""Operators' commands: the sweep, the retention purge, one user's export and one user's erasure."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from channels_redis.core import RedisChannelLayer
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from chat import exporting, fanout, importing, preferences, retention, search, services
from chat.management.commands.export_user_data import account_path
from chat.models import Conversation, Invite, Message, Preferences, Provider, TranscriptView, UsageDay
from tests.factories import stored_turn
from tests.processes import PYTHON, ROOT, base_env, manage
from tests.production import conftest as production

# PostgreSQL and Redis as the production tests find them: skipped with the reason when absent, failed
# under CI=true.
postgres = production.postgres
redis_url = production.redis_url


class Terminal(io.StringIO):
    """What an operator types, on a terminal."""

    def isatty(self) -> bool:
        return True


def run(*args: str, stdin: io.StringIO | None = None) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **({"stdin": stdin} if stdin is not None else {}))
    return out.getvalue()


def chat(owner: Any, title: str, *turns: tuple[str, str], days_ago: float = 0) -> Conversation:
    """A stored, indexed conversation last updated ``days_ago`` days ago."""
    conversation = Conversation.objects.create(owner=owner, title=title, model="demo")
    search.index_title([conversation.pk])
    for question, answer in turns:
        stored_turn(conversation, question, answer)
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(days=days_ago)
    )
    return conversation


def index_orphans() -> tuple[int, int]:
    """SQLite's search entries whose message or conversation is gone: (messages, titles)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM chat_message_fts WHERE rowid NOT IN (SELECT id FROM chat_message)"
        )
        messages = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM chat_title_fts "
            "WHERE conversation_id NOT IN (SELECT id FROM chat_conversation)"
        )
        return messages, cursor.fetchone()[0]


def index_entries_of(user: Any) -> int:
    """SQLite's message entries carrying ``user`` as their owner."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM chat_message_fts WHERE chat_message_fts MATCH %s", [f"owner : u{user.pk}"]
        )
        return cursor.fetchone()[0]


def titles(owner: Any) -> set[str]:
    return set(Conversation.objects.filter(owner=owner).values_list("title", flat=True))


def old(conversation: Conversation, days: float) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now() - timedelta(days=days))


@pytest.fixture
def tides(alice) -> Conversation:
    """Alice's conversation of 40 days ago: two turns, the second asked twice."""
    conversation = chat(alice, "Tides and moons", ("Why are there tides?", "The moon pulls the oceans."))
    first_answer = conversation.current_leaf
    stored_turn(conversation, "And neap tides?", "Quarter moons.")
    conversation.current_leaf = first_answer
    stored_turn(conversation, "And spring tides?", "Full and new moons.")
    old(conversation, 40)
    return conversation


# --- sweep_replies ---------------------------------------------------------------------------------


def _abandoned(turn: services.PostedTurn, text: str) -> Message:
    """The turn's reply as a dead worker leaves it: a checkpoint, then a lease nobody renews."""
    services.reply_checkpoint(reply_id=turn.reply.pk, text=text)
    Message.objects.filter(pk=turn.reply.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    return turn.reply


@pytest.mark.django_db(transaction=True)  # the ending is rendered on the worker threads, as in a worker
def test_sweep_replies_ends_replies_whose_worker_is_gone_from_their_last_checkpoint(alice, bob, posted_turn):
    abandoned = _abandoned(posted_turn, "The tides come from")
    alive = services.conversation_start(
        user=bob, text="Still going", model="demo", worker="worker.alive"
    ).reply
    assert run("sweep_replies") == "Ended 1 reply left streaming by a worker that is gone.\n"
    abandoned.refresh_from_db()
    assert abandoned.status == Message.Status.INTERRUPTED and abandoned.content == "The tides come from"
    assert "The tides come from" in abandoned.content_html and abandoned.worker == ""
    assert [hit.message_id for hit in search.search(user=alice, query="tides")] == [abandoned.pk]
    alive.refresh_from_db()
    assert alive.status == Message.Status.STREAMING  # its worker still renews its lease
    assert run("sweep_replies") == "Ended 0 replies left streaming by a worker that is gone.\n"


# --- purge_conversations -------------------------------------------------------------------------


def test_purge_deletes_conversations_idle_longer_than_the_days_given_leaving_no_trace(
    alice, bob, tides, admin_user
):
    recent = chat(alice, "Recent", ("Fresh question about tides", "Fresh answer"), days_ago=5)
    bobs = chat(bob, "Bob's old chat", ("Bob asks about moons", "Bob hears about tides"), days_ago=31)
    TranscriptView.objects.create(
        viewer=admin_user,
        viewer_name="admin",
        owner=alice,
        owner_name="alice",
        conversation=tides,
        conversation_title=tides.title,
    )
    shown = Message.objects.filter(conversation=tides).first()
    for target in (tides, shown):
        LogEntry.objects.create(
            user=admin_user,
            content_type=ContentType.objects.get_for_model(target),
            object_id=str(target.pk),
            object_repr=str(target),
            action_flag=CHANGE,
            change_message="[]",
        )
    gone = [tides.pk, bobs.pk]

    output = run("purge_conversations", "--older-than", "30", "--yes")

    assert (
        output
        == "Deleted 2 conversations (8 messages): the conversations last updated more than 30 days ago.\n"
    )
    assert titles(alice) == {"Recent"} and titles(bob) == set()
    assert not Message.objects.filter(conversation_id__in=gone).exists()
    assert index_orphans() == (0, 0)
    assert index_entries_of(alice) == 2 and index_entries_of(bob) == 0
    assert [hit.conversation_id for hit in search.search(user=alice, query="tides")] == [recent.pk]
    assert search.search(user=alice, query="moons") == [] and search.search(user=bob, query="moons") == []
    audit = TranscriptView.objects.get()
    assert (audit.viewer_name, audit.owner_name, audit.conversation, audit.conversation_title) == (
        "admin",
        "alice",
        None,
        "",
    )  # who read whose conversation, and when, stays on record; its words do not
    assert list(LogEntry.objects.values_list("object_repr", flat=True)) == ["", ""]


def test_purge_of_one_user_leaves_the_others_untouched(alice, bob, tides):
    bobs = chat(bob, "Bob's old chat", ("Bob asks about moons", "Bob hears about tides"), days_ago=90)
    output = run("purge_conversations", "--older-than", "30", "--user", "alice", "--yes")
    assert output.startswith("Deleted 1 conversation (6 messages): the conversations of alice last updated")
    assert titles(alice) == set() and titles(bob) == {"Bob's old chat"}
    assert Message.objects.filter(conversation=bobs).count() == 2 and index_entries_of(bob) == 2
    assert [hit.conversation_id for hit in search.search(user=bob, query="moons")] == [bobs.pk]


def test_a_dry_run_says_what_would_go_and_deletes_nothing(alice, tides):
    chat(alice, "Recent", ("Fresh question", "Fresh answer"), days_ago=1)
    output = run("purge_conversations", "--older-than", "30", "--dry-run")
    assert output == (
        "Would delete 1 conversation (6 messages): the conversations last updated more than 30 days ago. "
        "Nothing was deleted (dry run).\n"
    )
    assert titles(alice) == {"Tides and moons", "Recent"} and Message.objects.count() == 8
    assert index_entries_of(alice) == 8


def test_the_purge_never_deletes_a_conversation_whose_reply_is_being_written(alice, bob, posted_turn):
    writing = posted_turn.reply.conversation_id
    abandoned = _abandoned(
        services.conversation_start(user=bob, text="Left behind", model="demo", worker="worker.gone"), "Half"
    )
    idle = chat(alice, "Idle", ("Question", "Answer"), days_ago=3)
    for conversation_id in (writing, abandoned.conversation_id):
        Conversation.objects.filter(pk=conversation_id).update(
            updated_at=timezone.now() - timedelta(days=400)
        )

    output = run("purge_conversations", "--older-than", "0", "--yes")

    assert output.splitlines() == [
        "Keeping 2 conversations: a reply is being written in them.",
        "Deleted 1 conversation (2 messages): the conversations last updated more than 0 days ago.",
    ]
    assert set(Conversation.objects.values_list("pk", flat=True)) == {writing, abandoned.conversation_id}
    assert not Conversation.objects.filter(pk=idle.pk).exists()
    assert Message.objects.filter(status=Message.Status.STREAMING).count() == 2


def test_a_conversation_active_again_since_it_was_counted_is_not_deleted(alice, tides):
    other = chat(alice, "Also old", ("Question", "Answer"), days_ago=60)
    expired = retention.expired(before=retention.cutoff(30))
    assert retention.tally(expired) == retention.Tally(conversations=2, messages=8)
    services.message_post(conversation=tides, text="One more thing", model="demo", worker="w")  # activity
    first = retention.delete_batch(expired, size=1)
    assert first is not None and first.conversation_ids == [other.pk]
    assert retention.delete_batch(expired, after=other.pk, size=1) is None
    assert titles(alice) == {"Tides and moons"}


def test_the_purge_goes_in_batches_each_after_the_last(alice, bob):
    for number in range(5):
        chat(alice if number % 2 else bob, f"Old {number}", (f"Question {number}", "Answer"), days_ago=50)
    kept = chat(alice, "New", ("Question", "Answer"))
    before = retention.cutoff(30)
    expired = retention.expired(before=before)
    first = retention.delete_batch(expired, size=2)
    assert first is not None and len(first.conversation_ids) == 2 and first.messages == 4
    assert retention.tally(expired).conversations == 3
    assert async_to_sync(retention.purge)(before=before, size=2) == retention.Tally(
        conversations=3, messages=6
    )
    assert list(Conversation.objects.values_list("pk", flat=True)) == [kept.pk]
    assert index_orphans() == (0, 0)


def test_the_setting_gives_the_period_and_the_option_overrides_it(alice, settings):
    settings.CHAT_RETENTION_DAYS = 10
    chat(alice, "Twenty days", ("Question", "Answer"), days_ago=20)
    chat(alice, "Five days", ("Question", "Answer"), days_ago=5)
    assert "Would delete 0 conversations" in run("purge_conversations", "--older-than", "30", "--dry-run")
    output = run("purge_conversations", "--yes")
    assert output.startswith(
        "Deleted 1 conversation (2 messages): the conversations last updated more than 10 days"
    )
    assert titles(alice) == {"Five days"}


def test_without_a_retention_period_the_purge_refuses(alice, settings):
    settings.CHAT_RETENTION_DAYS = None
    chat(alice, "Ancient", ("Question", "Answer"), days_ago=5000)
    with pytest.raises(CommandError, match="CHAT_RETENTION_DAYS is empty"):
        run("purge_conversations", "--yes")
    assert titles(alice) == {"Ancient"}


@pytest.mark.parametrize(
    ("days", "error"),
    [
        ("-1", "--older-than must be 0 or more days, not -1."),
        ("abc", "--older-than must be a whole number of days, not 'abc'."),
        ("1.5", "--older-than must be a whole number of days, not '1.5'."),
        ("", "--older-than must be a whole number of days, not ''."),
    ],
)
def test_days_that_are_not_a_count_of_days_are_refused(alice, tides, days, error):
    with pytest.raises(CommandError) as refused:
        run("purge_conversations", "--older-than", days, "--yes")
    assert str(refused.value) == error
    assert titles(alice) == {"Tides and moons"}


def test_an_unknown_user_is_refused_by_every_command(alice, tides, tmp_path):
    for command in (
        ["purge_conversations", "--older-than", "1", "--user", "nobody", "--yes"],
        ["export_user_data", "nobody", "--output", str(tmp_path / "out.json")],
        ["delete_user_data", "nobody", "--yes"],
    ):
        with pytest.raises(CommandError, match=r"There is no user 'nobody'\."):
            run(*command)
    assert titles(alice) == {"Tides and moons"} and list(tmp_path.iterdir()) == []


def test_without_yes_the_purge_asks_on_a_terminal_and_refuses_without_one(alice, tides):
    with pytest.raises(CommandError, match="pass --yes"):
        run("purge_conversations", "--older-than", "30", stdin=io.StringIO("yes\n"))  # a pipe, not a person
    output = run("purge_conversations", "--older-than", "30", stdin=Terminal("no\n"))
    assert output.endswith("Type 'yes' to go on: Nothing was deleted.\n")
    assert titles(alice) == {"Tides and moons"}
    output = run("purge_conversations", "--older-than", "30", stdin=Terminal("yes\n"))
    assert output.startswith(
        "Delete 1 conversation (6 messages): the conversations last updated more than 30"
    )
    assert titles(alice) == set()


# --- export_user_data ------------------------------------------------------------------------------


async def _export_all(user: Any) -> str:
    return "".join([chunk async for chunk in exporting.export_all_async(user)])


def test_the_export_is_what_export_all_gives_and_the_account_record_sits_beside_it(alice, tides, tmp_path):
    chat(alice, "Newer", ("Newer question", "Newer answer"), days_ago=1)
    alice.email, alice.first_name = "alice@example.com", "Alice"
    alice.last_login = timezone.now()
    alice.save()
    preferences.theme_set(user=alice, theme="dark")
    provider = Provider(name="Private", base_url="http://127.0.0.1:9/v1")
    provider.set_api_key("sk-very-secret-key")
    provider.save()
    Conversation.objects.filter(pk=tides.pk).update(provider=provider)
    output = tmp_path / "alice.json"

    said = run("export_user_data", "alice", "--output", str(output))

    account = tmp_path / "alice.account.json"
    assert said == f"Exported 2 conversations of alice to {output}; the account record is in {account}.\n"
    assert output.read_text() == async_to_sync(_export_all)(alice)
    record = json.loads(account.read_text())
    assert record == {
        "format": "chat-account/1",
        "username": "alice",
        "email": "alice@example.com",
        "first_name": "Alice",
        "last_name": "",
        "date_joined": alice.date_joined.isoformat(),
        "last_login": alice.last_login.isoformat(),
        "preferences": {"theme": "dark"},
        "conversations_file": "alice.json",
    }
    for path in (output, account):
        text = path.read_text()
        assert alice.password not in text and "sk-very-secret-key" not in text
        assert provider.api_key_encrypted not in text
        assert path.stat().st_mode & 0o077 == 0  # for the operator's eyes only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.account.json", "alice.json"]


def _without_ids(record: dict) -> dict:
    """A record with each message id replaced by its place: ids are the database's, not content."""
    place = {m["id"]: n for n, m in enumerate(record["messages"])}
    messages = [
        {**m, "id": place[m["id"]], "parent": place.get(m["parent"]) if m["parent"] is not None else None}
        for m in record["messages"]
    ]
    return {**record, "id": None, "messages": messages, "current_message": place[record["current_message"]]}


def test_an_export_imports_as_another_user_as_the_same_conversations(alice, bob, tides, tmp_path):
    Conversation.objects.filter(pk=tides.pk).update(system_prompt="Answer briefly.", temperature=0.4)
    Message.objects.filter(conversation=tides, content="Quarter moons.").update(
        status=Message.Status.STOPPED, reasoning="Think of the phases.", completion_tokens=3, duration_ms=900
    )
    chat(alice, "Second", ("Second question", "Second answer"), days_ago=2)
    run("export_user_data", "alice", "--output", str(tmp_path / "alice.json"))

    with (tmp_path / "alice.json").open("rb") as file:
        result = importing.import_file(user=bob, file=file)

    assert (result.conversations, result.messages) == (2, 8)
    run("export_user_data", "bob", "--output", str(tmp_path / "bob.json"))
    exported = json.loads((tmp_path / "alice.json").read_text())
    imported = json.loads((tmp_path / "bob.json").read_text())
    assert [_without_ids(r) for r in imported] == [_without_ids(r) for r in exported]
    assert [hit.role for hit in search.search(user=bob, query="quarter")] == ["assistant"]


def test_an_export_never_replaces_an_existing_file(alice, tides, tmp_path):
    (tmp_path / "alice.account.json").write_text("kept")
    with pytest.raises(CommandError, match=r"alice\.account\.json already exists"):
        run("export_user_data", "alice", "--output", str(tmp_path / "alice.json"))
    assert [p.name for p in tmp_path.iterdir()] == ["alice.account.json"]
    assert (tmp_path / "alice.account.json").read_text() == "kept"
    with pytest.raises(CommandError, match="There is no directory"):
        run("export_user_data", "alice", "--output", str(tmp_path / "missing" / "alice.json"))


def test_the_account_record_is_named_after_the_conversations_file():
    assert account_path(Path("out/alice.json")) == Path("out/alice.account.json")
    assert account_path(Path("alice-2024")) == Path("alice-2024.account.json")


# --- delete_user_data ------------------------------------------------------------------------------


def test_deleting_a_user_leaves_nothing_of_them_and_everything_of_the_others(alice, bob, tides, admin_user):
    bobs = chat(bob, "Bob's chat", ("Bob asks about tides", "Bob hears about moons"))
    writing = services.conversation_start(user=alice, text="Still writing", model="demo", worker="w").reply
    preferences.theme_set(user=alice, theme="dark")
    UsageDay.objects.create(user=alice, day=timezone.now().date(), model="demo", requests=3)
    Invite.objects.create(token="t", email="alice@example.com", expires_at=timezone.now(), used_by=alice)
    TranscriptView.objects.create(
        viewer=admin_user,
        viewer_name="admin",
        owner=alice,
        owner_name="alice",
        conversation=tides,
        conversation_title=tides.title,
    )

    output = run("delete_user_data", "alice", "--yes")

    assert (
        output == "Deleted alice's 2 conversations (8 messages), their preferences and the account itself.\n"
    )
    assert not get_user_model().objects.filter(username="alice").exists()
    assert not Conversation.objects.filter(pk__in=[tides.pk, writing.conversation_id]).exists()
    assert not Preferences.objects.exists() and not UsageDay.objects.exists()
    assert index_orphans() == (0, 0) and index_entries_of(alice) == 0
    assert titles(bob) == {"Bob's chat"} and index_entries_of(bob) == 2
    assert [hit.conversation_id for hit in search.search(user=bob, query="tides")] == [bobs.pk]
    audit = TranscriptView.objects.get()
    assert (audit.viewer_name, audit.owner, audit.owner_name, audit.conversation_title) == (
        "admin",
        None,
        "",
        "",
    )
    assert Invite.objects.get().email == ""


def test_keeping_the_account_deletes_its_conversations_and_preferences_only(alice, tides):
    preferences.theme_set(user=alice, theme="light")
    UsageDay.objects.create(user=alice, day=timezone.now().date(), model="demo", requests=3)
    output = run("delete_user_data", "alice", "--keep-account", "--yes")
    assert (
        output == "Deleted alice's 1 conversation (6 messages) and their preferences; the account is kept.\n"
    )
    alice.refresh_from_db()
    assert alice.is_active and titles(alice) == set() and index_entries_of(alice) == 0
    assert not Preferences.objects.exists()
    assert UsageDay.objects.get().requests == 3  # what the limits count stays with the account
    assert run("delete_user_data", "alice", "--keep-account", "--yes") == (
        "Deleted alice's 0 conversations (0 messages); the account is kept.\n"
    )


def test_a_superuser_is_deleted_only_when_asked_for_by_name(admin_user):
    chat(admin_user, "Admin's chat", ("Question", "Answer"))
    with pytest.raises(CommandError, match="admin is a superuser; pass --include-superuser"):
        run("delete_user_data", "admin", "--yes")
    assert titles(admin_user) == {"Admin's chat"}
    run("delete_user_data", "admin", "--include-superuser", "--yes")
    assert not get_user_model().objects.filter(username="admin").exists()


def test_deleting_a_user_asks_first(alice, tides):
    with pytest.raises(CommandError, match="pass --yes"):
        run("delete_user_data", "alice", stdin=io.StringIO("yes\n"))
    output = run("delete_user_data", "alice", stdin=Terminal("n\n"))
    assert output == (
        "Delete alice's 1 conversation (6 messages), their preferences and the account itself? "
        "This cannot be undone. Type 'yes' to go on: Nothing was deleted.\n"
    )
    assert titles(alice) == {"Tides and moons"}
    assert "Deleted alice's 1 conversation" in run("delete_user_data", "alice", stdin=Terminal("yes\n"))


# --- Pages in other workers (Redis) ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_sweep_and_the_purge_tell_pages_in_other_workers_through_redis(
    redis_url,
    settings,
    alice,
    posted_turn,
):
    redis = {"hosts": [redis_url], "prefix": f"commands-{secrets.token_hex(4)}"}
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": redis}
    }
    conversation_id = posted_turn.reply.conversation_id
    _abandoned(posted_turn, "Saved text")

    async def heard_during(*command: str) -> dict:
        """What a worker with a page open on the conversation receives while ``command`` runs."""
        worker = RedisChannelLayer(**redis)  # another process's layer, as a worker has
        channel = await worker.new_channel()
        await worker.group_add(fanout.group_name(conversation_id), channel)
        await sync_to_async(call_command)(*command, stdout=io.StringIO())
        async with asyncio.timeout(5):
            return await worker.receive(channel)

    try:
        channel_layers.backends.clear()
        ending = async_to_sync(heard_during)("sweep_replies")["event"]
        assert (ending["kind"], ending["message_id"], ending["redraw"]) == (
            "ending",
            posted_turn.reply.pk,
            True,
        )
        old(Conversation.objects.get(pk=conversation_id), 2)
        deleted = async_to_sync(heard_during)("purge_conversations", "--older-than", "1", "--yes")["event"]
        assert deleted["kind"] == "deleted"
        assert not Conversation.objects.filter(pk=conversation_id).exists()
    finally:
        channel_layers.backends.clear()


# --- PostgreSQL -----------------------------------------------------------------------------------

PG_SETUP = r"""
import json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from chat import services
from chat.models import Conversation, Message

User = get_user_model()
carol, dave = User.objects.create_user("carol-SUFFIX"), User.objects.create_user("dave-SUFFIX")

def chat(owner, question, answer, days_ago):
    turn = services.conversation_start(user=owner, text=question, model="demo", worker="w")
    services.reply_finish(
        reply_id=turn.reply.pk, ending=services.ReplyEnding(status="complete", text=answer)
    )
    when = timezone.now() - timedelta(days=days_ago)
    Conversation.objects.filter(pk=turn.reply.conversation_id).update(updated_at=when)
    return turn

ids = {
    "old": str(chat(carol, "Why tides zebra?", "The moon pulls zebra", 40).reply.conversation_id),
    "recent": str(chat(carol, "Fresh zebra question", "Fresh answer", 2).reply.conversation_id),
    "dave": str(chat(dave, "Dave asks zebra", "Dave hears zebra", 40).reply.conversation_id),
}
writing = services.conversation_start(user=carol, text="Still writing zebra", model="demo", worker="w")
Message.objects.filter(pk=writing.reply.pk).update(lease_expires_at=timezone.now() + timedelta(hours=1))
Conversation.objects.filter(pk=writing.reply.conversation_id).update(
    updated_at=timezone.now() - timedelta(days=40)
)
ids["writing"] = str(writing.reply.conversation_id)
print("RESULT " + json.dumps({"ids": ids, "carol": carol.pk, "dave": dave.pk}))
"""


@pytest.mark.live
def test_on_postgresql_the_purge_and_the_erasure_leave_the_search_index_clean(postgres):
    suffix = secrets.token_hex(4)
    env = base_env(DATABASE_URL=postgres.url)
    setup = manage(env, "shell", "-c", PG_SETUP.replace("SUFFIX", suffix)).stdout
    made = json.loads(setup.split("RESULT ", 1)[1])
    ids, carol = made["ids"], f"carol-{suffix}"

    def one(query: str, *params: object) -> Any:
        with psycopg.connect(postgres.dsn, autocommit=True) as db:
            return db.execute(query, params).fetchone()[0]

    def entries(owner_id: int, word: str = "") -> int:
        """Messages whose search vector holds the owner's token (and ``word``)."""
        query = f"u{owner_id}" + (f" & {word}" if word else "")
        return one("SELECT count(*) FROM chat_message WHERE search_vector @@ to_tsquery('simple', %s)", query)

    def messages_of(key: str) -> int:
        return one("SELECT count(*) FROM chat_message WHERE conversation_id = %s::uuid", ids[key])

    assert (entries(made["carol"]), entries(made["dave"])) == (5, 2)  # the writing reply is not indexed yet
    purged = manage(env, "purge_conversations", "--older-than", "30", "--user", carol, "--yes").stdout
    assert purged.splitlines() == [
        "Keeping 1 conversation: a reply is being written in them.",
        f"Deleted 1 conversation (2 messages): the conversations of {carol} last updated more than 30 days "
        "ago.",
    ]
    assert messages_of("old") == 0 and messages_of("recent") == 2 and messages_of("writing") == 2
    assert one("SELECT count(*) FROM chat_conversation WHERE id = %s::uuid", ids["old"]) == 0
    assert entries(made["carol"]) == 3 and entries(made["carol"], "moon") == 0
    assert entries(made["dave"]) == 2 and messages_of("dave") == 2

    erased = manage(env, "delete_user_data", carol, "--yes").stdout
    assert erased == f"Deleted {carol}'s 2 conversations (4 messages) and the account itself.\n"
    assert entries(made["carol"]) == 0 and messages_of("recent") == 0 and messages_of("writing") == 0
    assert one("SELECT count(*) FROM auth_user WHERE id = %s", made["carol"]) == 0
    assert entries(made["dave"]) == 2 and entries(made["dave"], "zebra") == 2

    for command in (["export_user_data", carol], ["delete_user_data", carol, "--yes"]):
        done = subprocess.run(
            [PYTHON, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 1 and f"There is no user '{carol}'." in done.stderr
