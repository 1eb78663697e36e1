"""Every URL and socket route against every kind of visitor: anonymous, the owner (alice), another
user (bob), support staff without the transcript permission, and a superuser.

Chat pages are their owner's alone, whoever else asks (staff included: they use the admin); the
admin's messages and audit log need more than staff status.
"""

from __future__ import annotations

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from chat.models import Conversation
from chat.routing import websocket_urlpatterns
from tests.factories import stored_turn

ROLES = ("anonymous", "alice", "bob", "support", "superuser")

# (method, path, statuses in the order of ROLES). {c}: alice's conversation, {m}: its reply.
OWNER_ONLY = (302, 200, 404, 404, 404)
SIGNED_IN = (302, 200, 200, 200, 200)
ADMIN_STAFF = (302, 302, 302, 200, 200)
ADMIN_TRANSCRIPTS = (302, 302, 302, 403, 200)
MATRIX = [
    ("get", "/", SIGNED_IN),
    ("get", "/c/{c}/", OWNER_ONLY),
    ("get", "/c/{c}/settings/", OWNER_ONLY),
    ("get", "/c/{c}/m/{m}/source", OWNER_ONLY),
    ("get", "/c/{c}/export.md", OWNER_ONLY),
    ("get", "/c/{c}/export.json", OWNER_ONLY),
    ("get", "/c/{c}/messages/?before={m}", OWNER_ONLY),
    ("post", "/c/{c}/rename/", (302, 200, 404, 404, 404)),
    ("post", "/c/{c}/delete/", (302, 303, 404, 404, 404)),
    ("post", "/c/new/", (302, 303, 303, 303, 303)),
    ("get", "/conversations/", SIGNED_IN),
    ("get", "/search/?q=tides", SIGNED_IN),
    ("get", "/export/", SIGNED_IN),
    ("get", "/import/", SIGNED_IN),
    ("get", "/usage/", SIGNED_IN),
    ("post", "/preferences/theme/", (302, 303, 303, 303, 303)),
    ("get", "/setup/", (404, 404, 404, 404, 404)),
    ("get", "/healthz", (200, 200, 200, 200, 200)),
    ("get", "/accounts/login/", (200, 302, 302, 302, 302)),
    ("get", "/accounts/signup/", (403, 403, 403, 403, 403)),
    ("get", "/accounts/invite/no-such-invite/", (410, 410, 410, 410, 410)),
    ("get", "/accounts/password/", (302, 200, 200, 200, 200)),
    ("get", "/accounts/password/reset/", (200, 200, 200, 200, 200)),
    ("get", "/admin/", ADMIN_STAFF),
    ("get", "/admin/chat/conversation/", ADMIN_STAFF),
    ("get", "/admin/chat/conversation/{c}/change/", ADMIN_STAFF),
    ("get", "/admin/chat/usageday/", ADMIN_STAFF),
    ("get", "/admin/chat/message/", ADMIN_TRANSCRIPTS),
    ("get", "/admin/chat/message/{m}/change/", ADMIN_TRANSCRIPTS),
    ("get", "/admin/chat/transcriptview/", ADMIN_TRANSCRIPTS),
    ("get", "/admin/chat/provider/", ADMIN_TRANSCRIPTS),  # support has no provider permission
    ("get", "/admin/auth/user/", ADMIN_TRANSCRIPTS),
]
POST_DATA = {
    "/c/{c}/rename/": {"title": "Renamed"},
    "/c/new/": {"text": "Hello"},
    "/preferences/theme/": {"theme": "dark"},
}


@pytest.fixture
def people(db, alice, bob, admin_user) -> dict[str, object]:
    support = get_user_model().objects.create_user("support", password="support-password-1", is_staff=True)
    support.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_conversation", "view_usageday", "view_message"])
    )
    return {"anonymous": None, "alice": alice, "bob": bob, "support": support, "superuser": admin_user}


@pytest.fixture
def place(alice) -> dict[str, str]:
    conversation = Conversation.objects.create(owner=alice, title="Tides", model="demo")
    reply = stored_turn(conversation, "Why are there tides?", "The moon.")
    return {"c": str(conversation.pk), "m": str(reply.pk)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("method", "path", "statuses"), MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_every_url_answers_each_visitor_as_it_should(people, place, upstream, method, path, statuses):
    # The owner last: a deletion of theirs would leave the others nothing to be refused.
    for role, expected in sorted(zip(ROLES, statuses, strict=True), key=lambda pair: pair[0] == "alice"):
        client = Client()
        if people[role] is not None:
            client.force_login(people[role])
        url = path.format(**place)
        response = client.get(url) if method == "get" else client.post(url, POST_DATA.get(path, {}))
        assert response.status_code == expected, f"{role}: {method.upper()} {url} -> {response.status_code}"


SOCKETS = [
    ("ws/c/{c}/", (False, True, False, False, False)),
    ("ws/new/", (False, True, True, True, True)),
    ("ws/import/0123456789abcdef0123456789abcdef/", (False, True, True, True, True)),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("path", "accepted"), SOCKETS, ids=[p for p, _ in SOCKETS])
async def test_every_socket_route_accepts_only_whom_it_should(people, place, path, accepted):
    from django.contrib.auth.models import AnonymousUser

    for role, expected in zip(ROLES, accepted, strict=True):
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/" + path.format(**place))
        communicator.scope["user"] = people[role] or AnonymousUser()
        connected, code = await communicator.connect()
        assert connected == expected, f"{role}: {path} -> {'accepted' if connected else code}"
        if connected:
            await communicator.disconnect()
        else:
            assert code == 4403, f"{role}: {path} closed with {code}"
