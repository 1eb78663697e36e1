"""The concurrent-reply limit on PostgreSQL when two admissions meet at the user's lock."""

from __future__ import annotations

import json

import pytest

from tests.processes import base_env, manage

pytestmark = pytest.mark.live

# One admission holds the user's lock and stores a streaming reply; a second, begun while the first
# holds the lock, waits for it. Once the first commits, the second must count that reply.
SCRIPT = r"""
import json, threading, time, uuid
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from chat import limits
from chat.models import Conversation, Message

user = get_user_model().objects.create_user(f"race-{uuid.uuid4().hex[:8]}")
conversation = Conversation.objects.create(owner=user, title="race", model="demo")
holding = threading.Event()
result = {}

def first():
    with transaction.atomic():
        result["first"] = getattr(limits.admit(user_id=user.pk), "limit", None)
        Message.objects.create(conversation=conversation, role="assistant", status="streaming")
        holding.set()
        time.sleep(0.5)  # the second admission starts, and waits for the lock, meanwhile
    connection.close()

def second():
    holding.wait()
    time.sleep(0.1)
    with transaction.atomic():
        result["second"] = getattr(limits.admit(user_id=user.pk), "limit", None)
    connection.close()

threads = [threading.Thread(target=first), threading.Thread(target=second)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(result))
"""


def test_an_admission_that_waited_for_the_lock_counts_the_reply_committed_meanwhile(postgres):
    env = base_env(DATABASE_URL=postgres.url, CHAT_LIMIT_CONCURRENT_REPLIES="1")
    output = manage(env, "shell", "-c", SCRIPT).stdout
    result = json.loads(output.strip().splitlines()[-1])
    assert result == {"first": None, "second": "concurrent_replies"}
