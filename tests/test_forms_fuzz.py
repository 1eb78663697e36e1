"""Every form and query string answers arbitrary input with a page or a plain error, never a 500.

The new-chat form, conversation settings, first run, login, sign-up and invite, the admin's
provider form and the query strings of the pages: any bytes a browser can send (NUL included;
Django decodes anything else with replacement), against the simulator on loopback. A provider the
admin saved must be one every request to it can carry.
"""

from __future__ import annotations

import json

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import AsyncClient
from hypothesis import example, given
from hypothesis import strategies as st

from chat import providers, streaming
from chat.middleware import NUL_IN_QUERY
from chat.models import Conversation, Message, Provider
from chat.storable import is_storable
from chat.upstream import ChatRequest, build_payload
from tests.fuzzing import AWKWARD, broken_things, form_body, form_values, fuzz, json_values

pytestmark = pytest.mark.django_db(transaction=True)

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("root", password="root-password-1")


def post(runner, user, path: str, fields: dict) -> int:
    """POST ``fields`` as a browser would (signed in as ``user``); the status, after replies end."""

    async def request() -> int:
        client = AsyncClient()
        if user is not None:
            await client.aforce_login(user)
        response = await client.post(path, form_body(fields), content_type=FORM)
        await streaming.wait_all()
        return response.status_code

    with broken_things() as broken:
        status = runner.run(request())
    assert not broken.records, broken.describe()
    return status


@fuzz()
@given(text=form_values, model=form_values | st.sampled_from(["demo?tokens=2", "p1:demo", ""]))
@example(text="nul \x00 in text", model="demo?tokens=2")
@example(text="ok", model="demo\x00")
def test_new_chat_form(alice, upstream, runner, text, model):
    status = post(runner, alice, "/c/new/", {"text": text, "model": model})
    assert status in (303, 400)
    assert not Message.objects.filter(status=Message.Status.STREAMING).exists()
    for message in Message.objects.all():
        assert is_storable(message.content)


@fuzz()
@given(system_prompt=form_values, temperature=form_values, max_tokens=form_values)
@example(system_prompt="a\x00b", temperature="1e400", max_tokens="99999999999999999999")
def test_conversation_settings_form(
    alice, alice_conversation, runner, system_prompt, temperature, max_tokens
):
    fields = {"system_prompt": system_prompt, "temperature": temperature, "max_tokens": max_tokens}
    status = post(runner, alice, f"/c/{alice_conversation.pk}/settings/", fields)
    assert status in (303, 400)


@fuzz()
@given(username=form_values, password=form_values)
@example(username="alice\x00", password="x")
def test_login_form(alice, runner, username, password):
    # 429 once the examples have used up the tries of their one address.
    assert post(runner, None, "/accounts/login/", {"username": username, "password": password}) in (
        200,
        302,
        429,
    )


@fuzz()
@given(username=form_values, password1=form_values, password2=form_values)
@example(username="root\x00", password1="long-password-1", password2="long-password-1")
def test_first_run_form(db, runner, username, password1, password2):
    fields = {"username": username, "password1": password1, "password2": password2}
    status = post(runner, None, "/setup/", fields)
    assert status in (200, 302)
    get_user_model().objects.all().delete()  # the page exists only while there is no account


@fuzz()
@given(username=form_values, email=form_values, password1=form_values, password2=form_values)
@example(
    username="carol\x00", email="c@example.org", password1="long-password-1", password2="long-password-1"
)
def test_signup_and_invite_forms(db, settings, runner, username, email, password1, password2):
    from datetime import timedelta

    from django.utils import timezone

    from chat import accounts
    from chat.models import AccountRequest, Invite

    settings.CHAT_SIGNUP = "approval"
    fields = {"username": username, "email": email, "password1": password1, "password2": password2}
    assert post(runner, None, "/accounts/signup/", fields) in (200, 400)
    invite = Invite.objects.create(
        token=accounts.new_invite_token(), expires_at=timezone.now() + timedelta(days=1)
    )
    assert post(runner, None, f"/accounts/invite/{invite.token}/", fields) in (302, 400)
    for user in get_user_model().objects.all():  # whatever was made is a valid account
        assert is_storable(user.username) and user.has_usable_password()
    AccountRequest.objects.all().delete()
    Invite.objects.all().delete()
    get_user_model().objects.all().delete()


provider_fields = st.fixed_dictionaries(
    {
        "name": form_values,
        "base_url": form_values | st.just("http://127.0.0.1:9/v1"),
        "model_ids": form_values,
        "extra_fields": form_values | json_values.map(json.dumps) | st.just("[" * 100_000),
        "api_key": form_values,
    },
    optional={"enabled": st.just("on"), "all_models": st.just("on"), "stream_usage": st.just("on")},
)


@fuzz()
@given(fields=provider_fields)
@example(
    fields={
        "name": "Escapes",
        "base_url": "http://127.0.0.1:9/v1",
        "model_ids": "m",
        "extra_fields": '{"a\\u0000": ["\\udead", "\\ud83d\\ude00"]}',
        "api_key": "",
    }
)
def test_admin_provider_form(admin_user, runner, fields):
    status = post(runner, admin_user, "/admin/chat/provider/add/", fields)
    assert status in (200, 302)
    for provider in Provider.objects.all():
        endpoint = providers.provider_endpoint(provider)
        payload = build_payload(endpoint, ChatRequest(model="m", messages=[]), stream_usage=True)
        httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions", json=payload)  # it can be sent
        assert is_storable(json.dumps(provider.extra_fields, ensure_ascii=False))
    Provider.objects.all().delete()


PAGES = [
    "/",
    "/usage/",
    "/accounts/login/",
    "/admin/chat/usageday/",
    "/admin/chat/transcriptview/",
    "/admin/chat/conversation/",
    "/admin/chat/message/",
    "/admin/chat/provider/",
    "/admin/auth/user/",
]


@fuzz()
@given(
    page=st.sampled_from(PAGES),
    query=st.binary(max_size=40)
    | st.sampled_from(AWKWARD).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
@example(page="/admin/chat/message/", query=b"q=%00")
@example(page="/admin/chat/conversation/", query=b"status=%00&model=%00")
def test_any_query_string(admin_user, alice_conversation, runner, page, query):
    from urllib.parse import quote_from_bytes

    async def request() -> int:
        client = AsyncClient()
        await client.aforce_login(admin_user)
        response = await client.get(f"{page}?{quote_from_bytes(query, safe='=&')}")
        return response.status_code

    with broken_things() as broken:
        status = runner.run(request())
    assert not broken.records, broken.describe()
    assert status in (200, 302, 400)


def test_a_nul_in_a_query_string_is_refused_with_a_sentence(admin_user, client):
    client.force_login(admin_user)
    response = client.get("/admin/chat/message/?q=%00")
    assert response.status_code == 400
    assert response.content.decode() == NUL_IN_QUERY
    assert client.get("/admin/chat/message/?q=fine").status_code == 200


def test_extra_fields_holding_escapes_are_stored_storable(admin_user, client):
    client.force_login(admin_user)
    fields = {
        "name": "Escapes",
        "base_url": "http://127.0.0.1:9/v1",
        "model_ids": "m",
        "extra_fields": '{"top\\u0000": "\\udead"}',
        "enabled": "on",
    }
    assert client.post("/admin/chat/provider/add/", fields).status_code == 302
    assert Provider.objects.get().extra_fields == {"top\ufffd": "\ufffd"}


def test_json_nested_too_deep_is_a_form_error(admin_user, client):
    client.force_login(admin_user)
    fields = {"name": "Deep", "base_url": "http://127.0.0.1:9/v1", "extra_fields": "[" * 100_000}
    response = client.post("/admin/chat/provider/add/", fields)
    assert response.status_code == 200
    assert "That JSON is nested too deeply." in response.content.decode()
    assert not Conversation.objects.exists()
