"""Sign-in throttling per username and per address, in the database and in Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from chat import login_throttle
from chat.models import LoginFailures
from tests.production.conftest import unavailable

REDIS_URL = "redis://127.0.0.1:6379/7"
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture(params=["database", "redis"])
def store(request, settings, db):
    """Counts in the database (no REDIS_URL) or in a real Redis; the test's counts start from none."""
    settings.CHAT_LOGIN_FAILURES_PER_USERNAME = 3
    settings.CHAT_LOGIN_FAILURES_PER_ADDRESS = 5
    settings.CHAT_LOGIN_LOCKOUT_SECONDS = 600
    if request.param == "redis":
        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            unavailable(f"Redis is not reachable at {REDIS_URL} ({exc})")
        settings.REDIS_URL = REDIS_URL
        # Keys of this test's own, so earlier runs' counts (and other tests) do not leak in.
        prefix = f"chat:login:test-{uuid.uuid4().hex[:8]}:"
        original, login_throttle.REDIS_PREFIX = login_throttle.REDIS_PREFIX, prefix
        yield request.param
        login_throttle.REDIS_PREFIX = original
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    else:
        settings.REDIS_URL = ""
        yield request.param


def end_windows(store: str) -> None:
    """What waiting out the lockout does."""
    if store == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{login_throttle.REDIS_PREFIX}*"):
            client.delete(key)
    else:
        LoginFailures.objects.update(window_ends=timezone.now() - timedelta(seconds=1))


def sign_in(username: str, password: str, *, address: str = "192.0.2.10", url: str = LOGIN):
    return Client(REMOTE_ADDR=address).post(url, {"username": username, "password": password})


def signed_in(response) -> bool:
    return response.status_code == 302


def test_after_the_failures_allowed_even_the_right_password_is_refused_with_a_clear_429(alice, store):
    for _ in range(3):
        wrong = sign_in("alice", "not-her-password")
        assert wrong.status_code == 200
        assert "Please enter a correct username and password" in wrong.content.decode()
    refused = sign_in("alice", "alice-password-1")
    assert refused.status_code == 429
    assert "Too many failed sign-ins for this username. Try again in 10 minutes." in refused.content.decode()
    assert 590 <= int(refused["Retry-After"]) <= 600
    assert "_auth_user_id" not in refused.wsgi_request.session

    end_windows(store)
    assert signed_in(sign_in("alice", "alice-password-1"))


def test_a_refusal_is_not_one_more_failure(alice, store):
    for _ in range(3):
        sign_in("alice", "wrong")
    for _ in range(5):
        assert sign_in("alice", "wrong").status_code == 429
    # The per-address limit (5) would have been reached had the refusals counted.
    assert sign_in("bob", "wrong", address="192.0.2.10").status_code == 200


def test_usernames_are_counted_whatever_their_case_and_whether_they_exist(alice, store):
    sign_in("ALICE", "wrong")
    sign_in("Alice", "wrong")
    sign_in("alice", "wrong")
    assert sign_in("alice", "alice-password-1").status_code == 429
    for _ in range(3):
        sign_in("nobody-here", "guess", address="192.0.2.20")
    assert sign_in("nobody-here", "guess", address="192.0.2.20").status_code == 429


def test_one_address_is_refused_after_its_failures_across_usernames_and_others_are_not(alice, bob, store):
    for name in ("carol", "dave", "erin", "frank", "grace"):
        sign_in(name, "guess", address="198.51.100.7")
    refused = sign_in("bob", "bob-password-1", address="198.51.100.7")
    assert refused.status_code == 429
    assert "Too many failed sign-ins from your network address." in refused.content.decode()
    assert signed_in(sign_in("bob", "bob-password-1", address="198.51.100.8"))


def test_a_successful_sign_in_clears_its_username_count(alice, store):
    sign_in("alice", "wrong")
    sign_in("alice", "wrong")
    assert signed_in(sign_in("alice", "alice-password-1"))
    sign_in("alice", "wrong")
    sign_in("alice", "wrong")
    assert signed_in(sign_in("alice", "alice-password-1"))


def test_the_admin_sign_in_is_counted_and_refused_alike(admin_user, store):
    for _ in range(3):
        assert sign_in("admin", "wrong", url=ADMIN_LOGIN).status_code == 200
    refused = sign_in("admin", "password", url=ADMIN_LOGIN)
    assert refused.status_code == 429
    assert "Too many failed sign-ins for this username." in refused.content.decode()
    # Counted together with the site's own form.
    assert sign_in("admin", "password").status_code == 429


def test_a_limit_of_zero_counts_nothing(alice, store, settings):
    settings.CHAT_LOGIN_FAILURES_PER_USERNAME = 0
    settings.CHAT_LOGIN_FAILURES_PER_ADDRESS = 0
    for _ in range(8):
        sign_in("alice", "wrong")
    assert signed_in(sign_in("alice", "alice-password-1"))
    assert not LoginFailures.objects.exists()


def test_the_database_holds_no_usernames_and_clears_ended_windows(alice, settings, db):
    settings.REDIS_URL = ""
    settings.CHAT_LOGIN_FAILURES_PER_USERNAME = 3
    sign_in("alice", "wrong")
    assert LoginFailures.objects.count() == 2  # the username's and the address's
    assert not LoginFailures.objects.filter(key__icontains="alice").exists()
    LoginFailures.objects.update(window_ends=timezone.now() - timedelta(seconds=1))
    sign_in("bob", "wrong", address="192.0.2.99")
    assert LoginFailures.objects.count() == 2  # the ended windows went
    assert set(LoginFailures.objects.values_list("failures", flat=True)) == {1}


def test_the_message_gives_the_wait_in_words():
    assert login_throttle.Lockout("username", 900).message.endswith("Try again in 15 minutes.")
    assert login_throttle.Lockout("address", 61).message.endswith("Try again in 2 minutes.")
    assert login_throttle.Lockout("address", 45).message.endswith("Try again in a minute.")
    assert login_throttle.Lockout("address", 12).message.endswith("Try again in 12 seconds.")


def test_behind_the_proxy_the_address_it_appended_counts_not_the_clients_claim(alice, settings, db):
    settings.REDIS_URL = ""
    settings.BEHIND_PROXY = True
    settings.CHAT_LOGIN_FAILURES_PER_ADDRESS = 2
    proxy = Client(REMOTE_ADDR="127.0.0.1")
    for claimed in ("10.0.0.1", "10.0.0.2"):
        proxy.post(
            LOGIN,
            {"username": f"guess-{claimed}", "password": "x"},
            HTTP_X_FORWARDED_FOR=f"{claimed}, 203.0.113.5",
        )
    refused = proxy.post(LOGIN, {"username": "alice", "password": "x"}, HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert refused.status_code == 429
    other = proxy.post(
        LOGIN, {"username": "alice", "password": "alice-password-1"}, HTTP_X_FORWARDED_FOR="203.0.113.6"
    )
    assert signed_in(other)


def test_without_the_proxy_setting_forwarded_addresses_are_ignored(alice, settings, db):
    settings.REDIS_URL = ""
    settings.BEHIND_PROXY = False
    settings.CHAT_LOGIN_FAILURES_PER_ADDRESS = 2
    for claimed in ("10.0.0.1", "10.0.0.2"):
        Client(REMOTE_ADDR="192.0.2.50").post(
            LOGIN, {"username": f"guess-{claimed}", "password": "x"}, HTTP_X_FORWARDED_FOR=claimed
        )
    assert sign_in("alice", "alice-password-1", address="192.0.2.50").status_code == 429


def test_users_created_after_failures_under_their_name_start_locked_only_for_the_window(alice, store):
    for _ in range(3):
        sign_in("newcomer", "guess")
    get_user_model().objects.create_user("newcomer", password="newcomer-password-1")
    assert sign_in("newcomer", "newcomer-password-1").status_code == 429
    end_windows(store)
    assert signed_in(sign_in("newcomer", "newcomer-password-1"))
