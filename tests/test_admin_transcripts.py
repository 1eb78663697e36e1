"""The admin's transcripts: drawn as the chat page draws them, read only by holders of the
transcript permission, and every reading written down (and shown to the owner)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from chat.models import Message, TranscriptView
from tests.factories import stored_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def support(db) -> get_user_model():
    """Staff who may see conversations and usage, but not read messages."""
    user = get_user_model().objects.create_user("support", password="support-password-1", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_conversation", "view_message", "view_usageday"])
    )
    return user


def change_url(conversation) -> str:
    return f"/admin/chat/conversation/{conversation.pk}/change/"


def test_a_long_conversation_shows_its_latest_messages_as_the_chat_page_does(
    staff_client, alice_conversation
):
    for n in range(60):
        stored_turn(alice_conversation, f"Question {n:02d}", f"Answer **{n:02d}**")
    page = staff_client.get(change_url(alice_conversation)).content.decode()
    assert "Answer <strong>59</strong>" in page  # the reply's stored, sanitized HTML
    assert "Question 35" in page and "Question 34" not in page  # the latest 50
    assert 'data-status="complete"' in page  # the chat page's own partial
    assert "Regenerate" not in page and "edit-button" not in page  # read-only
    link = f"/admin/chat/message/?conversation__id__exact={alice_conversation.pk}"
    assert link in page
    listing = staff_client.get(link)
    assert listing.status_code == 200
    assert "120 messages" in listing.content.decode()


def test_model_output_in_the_admin_transcript_is_sanitized(staff_client, alice_conversation):
    stored_turn(alice_conversation, "<script>alert(1)</script>", "Fine <img src=x onerror=alert(1)>")
    page = staff_client.get(change_url(alice_conversation)).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x" in page  # the markup arrives as text


def test_saving_a_long_conversations_settings_keeps_every_message(staff_client, alice_conversation):
    for n in range(60):
        stored_turn(alice_conversation, f"Question {n}", f"Answer {n}")
    url = change_url(alice_conversation)
    form = staff_client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    data.update({"title": "Renamed by an admin", "model": "demo"})
    data.pop("provider", None)
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    alice_conversation.refresh_from_db()
    assert alice_conversation.title == "Renamed by an admin"
    assert alice_conversation.messages.count() == 120


def test_every_reading_of_a_transcript_is_written_down(staff_client, admin_user, alice, alice_conversation):
    reply = stored_turn(alice_conversation, "Private question", "Private answer")
    staff_client.get(change_url(alice_conversation), HTTP_USER_AGENT="Audit test", REMOTE_ADDR="10.1.2.3")
    staff_client.get(f"/admin/chat/message/?conversation__id__exact={alice_conversation.pk}")
    staff_client.get(f"/admin/chat/message/{reply.pk}/change/")
    views = list(TranscriptView.objects.order_by("viewed_at"))
    assert len(views) == 3
    first = views[0]
    assert (first.viewer, first.owner, first.conversation) == (admin_user, alice, alice_conversation)
    assert (first.viewer_name, first.owner_name) == ("admin", "alice")
    assert (first.address, first.user_agent) == ("10.1.2.3", "Audit test")


def test_support_staff_see_metadata_and_no_text_and_leave_no_audit_entry(support, alice_conversation):
    stored_turn(alice_conversation, "Private question", "Private answer")
    client = Client()
    client.force_login(support)
    page = client.get(change_url(alice_conversation))
    assert page.status_code == 200
    html = page.content.decode()
    assert str(alice_conversation.pk) in html and "Alice&#x27;s chat" in html
    assert "Private question" not in html and "Private answer" not in html
    assert client.get("/admin/chat/message/").status_code == 403
    reply = Message.objects.filter(role="assistant").get()
    assert client.get(f"/admin/chat/message/{reply.pk}/change/").status_code == 403
    listing = client.get("/admin/chat/conversation/?q=Private").content.decode()
    assert "0 conversations" in listing or alice_conversation.title not in listing  # no text search
    assert not TranscriptView.objects.exists()


def test_the_owner_is_told_when_an_administrator_read_their_conversation(
    staff_client, alice, alice_conversation, upstream, settings
):
    stored_turn(alice_conversation, "Private question", "Private answer")
    owner = Client()
    owner.force_login(alice)
    before = owner.get(alice_conversation.get_absolute_url()).content.decode()
    assert "An administrator viewed this conversation" not in before
    staff_client.get(change_url(alice_conversation))
    page = owner.get(alice_conversation.get_absolute_url()).content.decode()
    assert "An administrator viewed this conversation on " in page
    settings.CHAT_AUDIT_NOTIFY_USERS = False
    assert "An administrator viewed" not in owner.get(alice_conversation.get_absolute_url()).content.decode()


def test_only_superusers_read_the_audit_log(staff_client, support, alice_conversation):
    staff_client.get(change_url(alice_conversation))
    assert staff_client.get("/admin/chat/transcriptview/").status_code == 200
    support.user_permissions.add(Permission.objects.get(codename="view_transcriptview"))
    client = Client()
    client.force_login(support)
    assert client.get("/admin/chat/transcriptview/").status_code == 403
