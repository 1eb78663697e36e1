from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model

from chat import services
from chat.models import Conversation
from chat.simulator import SimulatorConfig, SimulatorThread


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def alice_conversation(alice) -> Conversation:
    return Conversation.objects.create(owner=alice, title="Alice's chat", model="demo")


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorThread]:
    """The project's OpenAI-compatible simulator on a loopback port, shared by the session."""
    with SimulatorThread(config=SimulatorConfig(tokens_per_second=400, reply_tokens=12)) as sim:
        yield sim


@pytest.fixture
def upstream(settings, simulator) -> SimulatorThread:
    """Point the app at the simulator."""
    settings.CHAT_DEMO = False
    settings.CHAT_API_BASE = simulator.base_url
    settings.CHAT_API_KEY = ""
    return simulator


@pytest.fixture
def posted_turn(alice_conversation):
    return services.message_post(
        conversation=alice_conversation, text="Hello there", model="demo", worker="test-worker"
    )
