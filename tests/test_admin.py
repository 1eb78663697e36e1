"""The admin: stored conversations are browsable, searchable and filterable; history is read-only;
providers keep their API keys to themselves."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test import Client

from chat.models import Conversation, Provider
from tests.factories import stored_turn
from tests.test_providers import KEY, provider_server


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
    assert "Why are there tides?" in page and "Mostly the moon's pull." in page
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


# --- Providers -------------------------------------------------------------------------------------


def provider_form(server, **fields) -> dict[str, str]:
    """What the provider's add/change form posts (checkboxes on)."""
    data = {
        "name": "Acme",
        "base_url": server.base_url + "/",
        "api_key": "",
        "enabled": "on",
        "all_models": "on",
        "model_ids": "",
        "extra_fields": "{}",
        "stream_usage": "on",
    }
    data.update(fields)
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def acme_server():
    cache.clear()  # model lists cached by an earlier test
    with provider_server() as sim:
        yield sim


@pytest.fixture
def acme(staff_client, acme_server) -> Provider:
    response = staff_client.post("/admin/chat/provider/add/", provider_form(acme_server, api_key=f" {KEY} "))
    assert response.status_code == 302, response.content.decode()
    return Provider.objects.get()


def test_provider_key_is_stored_encrypted_and_decrypts_back(acme, acme_server):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM chat_provider")
        row = cursor.fetchone()
    assert KEY not in repr(row) and "1234567890" not in repr(row)
    assert acme.api_key == KEY
    assert acme.base_url == acme_server.base_url  # trailing "/" dropped


def test_provider_key_is_shown_only_masked(staff_client, acme):
    listing = staff_client.get("/admin/chat/provider/").content.decode()
    change = staff_client.get(f"/admin/chat/provider/{acme.pk}/change/").content.decode()
    assert "sk-…7890" in listing and "sk-…7890" in change
    assert 'name="api_key"' in change and 'type="password"' in change


def test_provider_key_is_in_no_admin_page(staff_client, acme, acme_server, alice):
    conversation = Conversation.objects.create(owner=alice, title="On Acme", model="alpha", provider=acme)
    reply = stored_turn(conversation, "Hi", "Hello", provider=acme)
    pages = [
        "/admin/",
        "/admin/chat/provider/",
        "/admin/chat/provider/add/",
        f"/admin/chat/provider/{acme.pk}/change/",
        f"/admin/chat/provider/{acme.pk}/history/",
        f"/admin/chat/provider/{acme.pk}/delete/",
        "/admin/chat/conversation/",
        f"/admin/chat/conversation/{conversation.pk}/change/",
        "/admin/chat/message/",
        f"/admin/chat/message/{reply.pk}/change/",
    ]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        assert KEY not in response.content.decode(), url
    failed = staff_client.post(
        f"/admin/chat/provider/{acme.pk}/change/", provider_form(acme_server, api_key=KEY, name="")
    )
    assert failed.status_code == 200 and KEY not in failed.content.decode()  # not even re-rendered


def test_blank_key_on_edit_keeps_the_stored_one(staff_client, acme, acme_server):
    response = staff_client.post(
        f"/admin/chat/provider/{acme.pk}/change/", provider_form(acme_server, name="Acme Two")
    )
    assert response.status_code == 302
    acme.refresh_from_db()
    assert (acme.name, acme.api_key) == ("Acme Two", KEY)


def test_a_new_key_replaces_the_stored_one(staff_client, acme, acme_server):
    staff_client.post(
        f"/admin/chat/provider/{acme.pk}/change/", provider_form(acme_server, api_key="sk-new-999999")
    )
    acme.refresh_from_db()
    assert acme.api_key == "sk-new-999999"


def test_remove_checkbox_clears_the_stored_key(staff_client, acme, acme_server):
    assert (
        "Remove the stored key"
        in staff_client.get(f"/admin/chat/provider/{acme.pk}/change/").content.decode()
    )
    response = staff_client.post(
        f"/admin/chat/provider/{acme.pk}/change/", provider_form(acme_server, remove_api_key="on")
    )
    assert response.status_code == 302
    acme.refresh_from_db()
    assert (acme.api_key_encrypted, acme.api_key, acme.masked_key) == ("", "", "")
    assert (
        "Remove the stored key"
        not in staff_client.get(f"/admin/chat/provider/{acme.pk}/change/").content.decode()
    )


def test_a_new_key_and_remove_together_are_refused(staff_client, acme, acme_server):
    data = provider_form(acme_server, api_key="sk-new-999999", remove_api_key="on")
    response = staff_client.post(f"/admin/chat/provider/{acme.pk}/change/", data)
    assert "Either type a new API key or remove the stored one, not both." in response.content.decode()
    acme.refresh_from_db()
    assert acme.api_key == KEY


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('"top_p"', "must be a JSON object"),
        ('{"model": "x", "stream": false, "top_p": 1}', "cannot be changed here: model, stream."),
        ('{"stream_options": {}}', "cannot be changed here: stream_options."),
        ('{"messages": []}', "cannot be changed here: messages."),
    ],
)
def test_extra_fields_must_be_an_object_without_the_apps_own_fields(
    staff_client, acme_server, db, extra, error
):
    response = staff_client.post("/admin/chat/provider/add/", provider_form(acme_server, extra_fields=extra))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Provider.objects.exists()


def test_extra_fields_object_is_saved(staff_client, acme_server, db):
    extra = '{"top_p": 0.9, "provider": {"order": ["fast"]}}'
    staff_client.post("/admin/chat/provider/add/", provider_form(acme_server, extra_fields=extra))
    assert Provider.objects.get().extra_fields == {"top_p": 0.9, "provider": {"order": ["fast"]}}


def test_provider_list_shows_what_each_offers(staff_client, acme_server, db):
    staff_client.post(
        "/admin/chat/provider/add/", provider_form(acme_server, all_models=None, model_ids="beta")
    )
    page = staff_client.get("/admin/chat/provider/").content.decode()
    for column in ("base url", "enabled", "api key", "models offered"):
        assert column in page.lower()
    assert acme_server.base_url in page and ">beta<" in page


def test_check_the_model_list_reports_each_provider(staff_client, acme, acme_server, db):
    wrong = Provider(name="Wrong key", base_url=acme_server.base_url)
    wrong.set_api_key("sk-wrong-0000000000")
    wrong.save()
    response = staff_client.post(
        "/admin/chat/provider/",
        {"action": "check_model_list", "_selected_action": [acme.pk, wrong.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "Acme lists 2 models: alpha, beta." in page
    assert "Wrong key: The API key was rejected (401). Incorrect API key provided." in page
    assert "sk-wrong-0000000000" not in page and KEY not in page
    assert "2 listed by the server" in staff_client.get("/admin/chat/provider/").content.decode()


def test_conversation_and_messages_show_provider_and_options(staff_client, acme, alice):
    conversation = Conversation.objects.create(
        owner=alice, model="alpha", provider=acme, system_prompt="Be terse.", temperature=0.4, max_tokens=64
    )
    stored_turn(conversation, "Hi", "Hello", provider=acme, reasoning="Thinking hard", request_id="req-42")
    page = staff_client.get(f"/admin/chat/conversation/{conversation.pk}/change/").content.decode()
    assert "Be terse." in page and 'value="0.4"' in page and 'value="64"' in page
    assert "Thinking hard" in page and "req-42" in page and "Acme" in page
    listing = staff_client.get("/admin/chat/message/").content.decode()
    assert "Acme" in listing


def test_reply_usage_is_shown_as_reported_or_as_not_reported(staff_client, alice):
    conversation = Conversation.objects.create(owner=alice, title="Counting", model="m")
    stored_turn(conversation, "one", "With usage", prompt_tokens=3, completion_tokens=4, total_tokens=7)
    stored_turn(conversation, "two", "Without usage", reasoning="Let me see", request_id="req_abc123")
    page = staff_client.get(f"/admin/chat/conversation/{conversation.pk}/change/").content.decode()
    assert "3 + 4 = 7" in page
    assert "not reported" in page
    assert "Let me see" in page and "req_abc123" in page
