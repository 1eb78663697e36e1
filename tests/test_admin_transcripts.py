"""The admin's conversation page stays light for a long conversation; every message is a link away."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import stored_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_a_long_conversation_shows_its_latest_messages_and_links_to_all(staff_client, alice_conversation):
    for n in range(60):
        stored_turn(alice_conversation, f"Question {n:02d}", f"Answer {n:02d}")
    page = staff_client.get(f"/admin/chat/conversation/{alice_conversation.pk}/change/").content.decode()
    assert "120 in all; the latest 50 are below." in page
    assert "Answer 59" in page and "Question 35" in page
    assert "Question 34" not in page  # older than the latest 50
    link = f"/admin/chat/message/?conversation__id__exact={alice_conversation.pk}"
    assert link in page
    listing = staff_client.get(link)
    assert listing.status_code == 200
    assert "120 messages" in listing.content.decode()


def test_saving_a_long_conversations_settings_keeps_every_message(staff_client, alice_conversation):
    for n in range(60):
        stored_turn(alice_conversation, f"Question {n}", f"Answer {n}")
    url = f"/admin/chat/conversation/{alice_conversation.pk}/change/"
    page = staff_client.get(url)
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    data.update(
        {
            "title": "Renamed by an admin",
            "model": "demo",
            "messages-TOTAL_FORMS": "50",
            "messages-INITIAL_FORMS": "50",
            "messages-MIN_NUM_FORMS": "0",
            "messages-MAX_NUM_FORMS": "1000",
        }
    )
    inline = page.context["inline_admin_formsets"][0].formset
    for index, inline_form in enumerate(inline.forms):
        data[f"messages-{index}-id"] = str(inline_form.instance.pk)
        data[f"messages-{index}-conversation"] = str(alice_conversation.pk)
    data.pop("provider", None)
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    alice_conversation.refresh_from_db()
    assert alice_conversation.title == "Renamed by an admin"
    assert alice_conversation.messages.count() == 120
