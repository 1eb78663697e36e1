"""Accounts: sign-up in each mode, invites used once and before they expire, approval, passwords,
and each user's usage page; the admin's usage totals and chart."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from chat import accounts, usage
from chat.models import AccountRequest, Invite, SiteSettings, UsageDay

pytestmark = pytest.mark.django_db

NEW = {
    "username": "carol",
    "email": "carol@example.org",
    "password1": "a-Long-pass-9",
    "password2": "a-Long-pass-9",
}


def invite(**fields) -> Invite:
    fields.setdefault("expires_at", timezone.now() + timedelta(days=1))
    return Invite.objects.create(token=accounts.new_invite_token(), **fields)


@pytest.mark.parametrize("mode", ["closed", "invite"])
def test_without_approval_mode_the_signup_page_says_how_accounts_are_made(client: Client, settings, mode):
    settings.CHAT_SIGNUP = mode
    response = client.post("/accounts/signup/", NEW)
    assert response.status_code == 403
    assert (
        "by invitation" if mode == "invite" else "created by an administrator"
    ) in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_approval_mode_makes_an_inactive_account_until_an_admin_approves(
    client: Client, settings, admin_user
):
    settings.CHAT_SIGNUP = "approval"
    response = client.post("/accounts/signup/", NEW)
    assert response.status_code == 200
    assert "An administrator will review your request" in response.content.decode()
    carol = get_user_model().objects.get(username="carol")
    assert not carol.is_active and accounts.waiting_for_approval("carol")
    assert not client.login(username="carol", password=NEW["password1"])
    page = client.post("/accounts/login/", {"username": "carol", "password": NEW["password1"]})
    assert "waiting for an administrator&#x27;s approval" in page.content.decode()
    wrong = client.post("/accounts/login/", {"username": "carol", "password": "not-it"})
    assert "waiting for" not in wrong.content.decode()  # says nothing without the password
    assert accounts.decide(AccountRequest.objects.all(), approved=True, by=admin_user) == 1
    assert client.login(username="carol", password=NEW["password1"])
    assert accounts.decide(AccountRequest.objects.all(), approved=False, by=admin_user) == 0  # decided once


def test_the_admins_choice_of_mode_wins_over_the_setting(client: Client, settings):
    settings.CHAT_SIGNUP = "closed"
    SiteSettings.objects.create(pk=1, signup="approval")
    assert client.get("/accounts/signup/").status_code == 200


def test_a_bad_signup_changes_nothing_and_says_why(client: Client, settings, alice):
    settings.CHAT_SIGNUP = "approval"
    response = client.post("/accounts/signup/", {**NEW, "username": "alice", "password2": "different"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert not AccountRequest.objects.exists()


def test_an_invite_makes_an_active_account_once(client: Client, settings):
    settings.CHAT_SIGNUP = "closed"  # an invite is an administrator's own grant, in any mode
    link = f"/accounts/invite/{invite().token}/"
    response = client.post(link, NEW)
    assert response.status_code == 302 and response["Location"] == "/"
    carol = get_user_model().objects.get(username="carol")
    assert carol.is_active and Invite.objects.get().used_by == carol
    again = Client().post(link, {**NEW, "username": "dave"})
    assert again.status_code == 410 and "already been used" in again.content.decode()
    assert not get_user_model().objects.filter(username="dave").exists()


def test_an_expired_or_unknown_invite_is_refused(client: Client):
    old = invite(expires_at=timezone.now() - timedelta(minutes=1))
    response = client.post(f"/accounts/invite/{old.token}/", NEW)
    assert response.status_code == 410 and "has expired" in response.content.decode()
    unknown = client.get("/accounts/invite/not-a-token/")
    assert unknown.status_code == 410 and "not valid" in unknown.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_a_user_changes_their_password(client: Client, alice):
    client.force_login(alice)
    response = client.post(
        "/accounts/password/",
        {
            "old_password": "alice-password-1",
            "new_password1": "n3w-Pass-long",
            "new_password2": "n3w-Pass-long",
        },
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("n3w-Pass-long")


def test_a_forgotten_password_is_reset_through_the_emailed_link(client: Client, alice):
    alice.email = "alice@example.org"
    alice.save()
    client.post("/accounts/password/reset/", {"email": "alice@example.org"})
    (message,) = mail.outbox
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/\S+/)", message.body).group(1)
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "r3set-Pass-long", "new_password2": "r3set-Pass-long"},
    )
    assert done.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("r3set-Pass-long")


def test_each_user_sees_their_own_usage_and_limits(client: Client, alice, bob, settings, upstream):
    settings.CHAT_LIMIT_MESSAGES_PER_DAY = 200
    UsageDay.objects.create(
        user=alice, day=usage.today(), model="alpha", requests=3, prompt_tokens=1234, estimated=1
    )
    UsageDay.objects.create(user=bob, day=usage.today(), model="bobs-model", requests=9)
    client.force_login(alice)
    page = client.get("/usage/").content.decode()
    assert "alpha" in page and "1234*" in page and "Includes estimates" in page
    assert "Messages per day: 200" in page
    assert "bobs-model" not in page


def test_the_admin_usage_page_has_totals_top_users_and_a_daily_chart(admin_user, alice, bob):
    UsageDay.objects.create(user=alice, day=usage.today(), model="alpha", requests=3, prompt_tokens=100)
    UsageDay.objects.create(
        user=bob, day=usage.today() - timedelta(days=2), model="beta", completion_tokens=900
    )
    client = Client()
    client.force_login(admin_user)
    page = client.get("/admin/chat/usageday/").content.decode()
    assert "3 messages, 100 prompt and 900 completion tokens" in page
    assert page.index("<td>bob</td>") < page.index("<td>alice</td>")  # by tokens
    assert page.count('class="bar"') == 30 and "Tokens per day, last 30 days" in page
    assert "<script" not in page[page.index("<svg class") : page.index("</svg>")]
