"""Search on PostgreSQL: the tsvector column and its GIN indexes, written by the same paths."""

from __future__ import annotations

import json

import pytest

from tests.processes import base_env, manage

pytestmark = pytest.mark.live

SCRIPT = r"""
import json
from django.contrib.auth import get_user_model
from django.db import connection
from chat import search, services
from chat.models import Conversation, Message

User = get_user_model()
alice = User.objects.create_user("search-alice")
bob = User.objects.create_user("search-bob")
turn = services.conversation_start(user=alice, text="Why are there tides?", model="demo", worker="w")
services.reply_checkpoint(reply_id=turn.reply.pk, text="half a zebra")
streaming_hits = len(search.search(user=alice, query="zebra"))
services.reply_finish(
    reply_id=turn.reply.pk,
    ending=services.ReplyEnding(status="complete", text="Mostly the moon's pull on the oceans."),
)
other = services.conversation_start(user=bob, text="Secret about the moon", model="demo", worker="w")
services.conversation_rename(conversation=turn.reply.conversation, title="Ocean questions")
result = {
    "streaming_hits": streaming_hits,
    "pull": [(h.title, h.role, str(h.snippet)) for h in search.search(user=alice, query="pull")],
    "oce": [(h.title, h.role or "title") for h in search.search(user=alice, query="oce")],
    "bob_pull": len(search.search(user=bob, query="pull")),
    "hostile": len(search.search(user=alice, query="'; & | ! :* ( moon")),
}
search._RECENT = 1  # the newest message only: older matches come from the GIN index
result["older"] = [(h.title, h.role or "title") for h in search.search(user=alice, query="tides")]
result["older_none"] = len(search.search(user=alice, query="nowhere"))
with connection.cursor() as cursor:
    cursor.execute("SET enable_seqscan = off")
    cursor.execute("EXPLAIN SELECT id FROM chat_message WHERE search_vector @@ to_tsquery('simple', 'moon')")
    result["plan"] = " ".join(row[0] for row in cursor.fetchall())
services.conversation_delete(conversation=Conversation.objects.get(pk=turn.reply.conversation_id))
result["after_delete"] = len(search.search(user=alice, query="pull"))
print("RESULT " + json.dumps(result))
"""


def test_search_on_postgresql_uses_its_index_and_the_write_paths(postgres):
    env = base_env(DATABASE_URL=postgres.url)
    output = manage(env, "shell", "-c", SCRIPT).stdout
    result = json.loads(output.split("RESULT ", 1)[1])
    assert result["streaming_hits"] == 0  # a reply is indexed when it ends
    ((title, role, snippet),) = result["pull"]
    assert (title, role) == ("Ocean questions", "assistant")
    assert "<mark>pull</mark>" in snippet
    assert result["oce"] == [["Ocean questions", "title"], ["Ocean questions", "assistant"]]
    assert result["bob_pull"] == 0
    assert result["hostile"] >= 0
    assert result["older"] == [["Ocean questions", "user"]] and result["older_none"] == 0
    assert "chat_message_search" in result["plan"]
    assert result["after_delete"] == 0
