"""The admin: stored conversations are browsable, searchable and filterable; history is read-only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from chat.models import Conversation
from tests.factories import stored_turn


@pytest.fixture
def stored(alice, bob):
    first = Conversation.objects.create(owner=alice, title="Tides and moons", model="model-a")
    stored_turn(first, "Why are there tides?", "Mostly the moon's pull.")
    second = Conversation.objects.create(owner=bob, title="Sourdough", model="model-b")
    stored_turn(second, "How long to proof dough?", "It depends", status="error")
    return first, second


@pytest.fixture
def staff_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_list_shows_owner_model_message_count_and_latest_status(staff_client, stored):
    page = staff_client.get("/admin/chat/conversation/").content.decode()
    for column in ("owner", "model", "messages", "last activity", "status"):
        assert column in page.lower()
    assert "Tides and moons" in page and "Sourdough" in page
    assert "status-complete" in page and "status-error" in page


def test_search_finds_conversations_by_message_text(staff_client, stored):
    page = staff_client.get("/admin/chat/conversation/", {"q": "proof dough"}).content.decode()
    assert "Sourdough" in page and "Tides and moons" not in page


def test_filters_by_owner_model_and_status(staff_client, stored, bob):
    by_owner = staff_client.get("/admin/chat/conversation/", {"owner__id__exact": bob.pk}).content.decode()
    assert "Sourdough" in by_owner and "Tides and moons" not in by_owner
    by_model = staff_client.get("/admin/chat/conversation/", {"model": "model-a"}).content.decode()
    assert "Tides and moons" in by_model and "Sourdough" not in by_model
    by_status = staff_client.get("/admin/chat/conversation/", {"status": "error"}).content.decode()
    assert "Sourdough" in by_status and "Tides and moons" not in by_status


def test_conversation_page_shows_its_messages_inline_read_only(staff_client, stored):
    first, _ = stored
    page = staff_client.get(f"/admin/chat/conversation/{first.pk}/change/").content.decode()
    assert "Why are there tides?" in page and "Mostly the moon&#x27;s pull." in page
    assert 'name="messages-0-content"' not in page  # shown, not editable


def test_non_staff_cannot_open_the_admin(client: Client, alice, stored):
    client.force_login(alice)
    assert client.get("/admin/chat/conversation/").status_code == 302


def test_createsuperuser_noinput_uses_the_environment_password(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SUPERUSER_PASSWORD": "s3cret-enough-pass",
    }
    run = [sys.executable, "manage.py", "migrate", "--noinput"]
    subprocess.run(run, env=env, check=True, capture_output=True)
    create = [
        sys.executable,
        "manage.py",
        "createsuperuser",
        "--noinput",
        "--username",
        "root",
        "--email",
        "r@x.io",
    ]
    subprocess.run(create, env=env, check=True, capture_output=True)
    check = [
        sys.executable,
        "manage.py",
        "shell",
        "-c",
        "from django.contrib.auth import authenticate; "
        "print(bool(authenticate(username='root', password='s3cret-enough-pass')))",
    ]
    output = subprocess.run(check, env=env, check=True, capture_output=True, text=True).stdout
    assert output.strip().splitlines()[-1] == "True"
    assert get_user_model  # the test database is untouched: the commands ran on their own file
