"""The page's theme: chosen with the Theme button, remembered per user, shown without a query."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chat.models import Preferences

THEME_URL = "/preferences/theme/"


@pytest.fixture
def alice_client(client: Client, alice) -> Client:
    client.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"})
    return client


def html_tag(page: str) -> str:
    match = re.search(r"<html[^>]*>", page)
    assert match is not None
    return match.group(0)


def test_a_user_who_never_chose_follows_the_system(alice_client: Client):
    page = alice_client.get("/").content.decode()
    assert html_tag(page) == '<html lang="en">'
    assert not Preferences.objects.exists()  # nothing is made by only looking


def test_the_chosen_theme_is_stored_and_shown_on_every_page(alice_client: Client, alice):
    response = alice_client.post(THEME_URL, {"theme": "dark", "next": "/import/"})
    assert response.status_code == 303 and response["Location"] == "/import/"
    assert Preferences.objects.get(user=alice).theme == "dark"
    for address in ("/", "/import/", "/search/?q=x"):
        assert html_tag(alice_client.get(address).content.decode()) == '<html lang="en" data-theme="dark">'
    alice_client.post(THEME_URL, {"theme": "light"})
    assert 'data-theme="light"' in html_tag(alice_client.get("/").content.decode())
    alice_client.post(THEME_URL, {"theme": "system"})
    assert html_tag(alice_client.get("/").content.decode()) == '<html lang="en">'


def test_the_theme_button_offers_the_other_theme_without_javascript(alice_client: Client):
    alice_client.post(THEME_URL, {"theme": "dark"})
    page = alice_client.get("/").content.decode()
    button = re.search(r'<button type="submit" id="theme-button"[^>]*>Theme</button>', page)
    assert button is not None and 'name="theme" value="light"' in button.group(0)


def test_an_htmx_request_gets_no_content(alice_client: Client, alice):
    response = alice_client.post(THEME_URL, {"theme": "light"}, headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert alice.preferences.theme == "light"


def test_each_user_has_their_own_theme(alice_client: Client, bob):
    alice_client.post(THEME_URL, {"theme": "dark"})
    other = Client()
    other.force_login(bob)
    assert html_tag(other.get("/").content.decode()) == '<html lang="en">'


def test_an_unknown_theme_is_refused_and_nothing_is_stored(alice_client: Client):
    response = alice_client.post(THEME_URL, {"theme": "neon"})
    assert response.status_code == 400
    assert not Preferences.objects.exists()


def test_only_a_signed_in_post_with_its_csrf_token_stores_a_theme(client: Client, alice):
    assert client.post(THEME_URL, {"theme": "dark"}).status_code == 302  # to the login page
    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(alice)
    assert guarded.post(THEME_URL, {"theme": "dark"}).status_code == 403
    assert guarded.get(THEME_URL).status_code == 405
    assert not Preferences.objects.exists()


def test_going_back_never_leaves_the_site(alice_client: Client):
    response = alice_client.post(THEME_URL, {"theme": "dark", "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_the_login_page_follows_the_system(client: Client, alice):
    assert html_tag(client.get("/accounts/login/").content.decode()) == '<html lang="en">'


@pytest.mark.parametrize("chosen", [False, True])
def test_showing_the_theme_costs_no_query_of_its_own(alice_client: Client, alice, chosen: bool):
    if chosen:
        Preferences.objects.create(user=alice, theme="dark")
    with CaptureQueriesContext(connection) as queries:
        page = alice_client.get("/import/").content.decode()
    assert ('data-theme="dark"' in html_tag(page)) is chosen
    preferences_reads = [q["sql"] for q in queries if "chat_preferences" in q["sql"]]
    # Read only together with the user, in the query that loads the signed-in user.
    assert preferences_reads and all('"auth_user"' in sql for sql in preferences_reads)
