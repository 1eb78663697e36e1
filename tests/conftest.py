from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from hypothesis import settings as hypothesis_settings

from chat import services
from chat.models import Conversation
from chat.simulator import SimulatorConfig, SimulatorThread
from tests.fuzzing import LoopRunner

# Property-based tests draw the same examples on every run, so a red run is one anyone can repeat;
# HYPOTHESIS_PROFILE=explore draws new ones, ten times as many.
hypothesis_settings.register_profile("repeatable", derandomize=True, max_examples=60, print_blob=True)
hypothesis_settings.register_profile("explore", max_examples=600, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture
def runner() -> Iterator[LoopRunner]:
    """One event loop for every example of a property-based test, as one worker has one."""
    loop_runner = LoopRunner()
    yield loop_runner
    loop_runner.close()


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
