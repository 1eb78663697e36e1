"""What goes upstream fits the model's context window; the history is read in one query."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from chat import context, providers, selectors, streaming
from chat.context import estimate_tokens, fit, omitted_notice
from chat.models import Message, Provider
from chat.simulator import SimulatorConfig, SimulatorThread
from chat.upstream.listing import ModelListError, parse_models
from tests.factories import stored_turn
from tests.test_consumers import FINAL, frames_until_final, join, latest_reply, send

WINDOW = 2048  # the context length the simulator below reports


@pytest.fixture(autouse=True)
def _fresh_model_lists() -> Iterator[None]:
    cache.clear()  # model lists (and their context lengths) cached by an earlier test
    yield
    cache.clear()


@pytest.fixture(scope="module")
def small_model_server() -> Iterator[SimulatorThread]:
    """A simulator whose /models says its models read at most ``WINDOW`` tokens."""
    config = SimulatorConfig(tokens_per_second=0, reply_tokens=8, context_length=WINDOW)
    with SimulatorThread(config=config) as simulator:
        yield simulator


@pytest.fixture
def small_model(settings, small_model_server) -> SimulatorThread:
    settings.CHAT_DEMO = False
    settings.CHAT_API_BASE = small_model_server.base_url
    settings.CHAT_API_KEY = ""
    settings.CHAT_SYSTEM_PROMPT = "Be brief."
    return small_model_server


# --- The estimate ------------------------------------------------------------------------------------

# Texts with their token counts in a real BPE tokenizer: counted with tiktoken's cl100k_base.
SAMPLES = {
    "english": (
        53,
        "The quick brown fox jumps over the lazy dog. A conversation grows one turn at a time, and "
        "every request sends the whole history again, so a long chat eventually needs more tokens "
        "than the model can read. When that happens the oldest turns are left out first.",
    ),
    "markdown": (
        59,
        "## Setting up\n\n1. Install the package with `pip install chat`.\n2. Run **migrate**, then "
        "start the server.\n\n| Setting | Default |\n|---|---|\n| `CHAT_CONTEXT_LENGTH` | 32768 |\n\n"
        "> Note: the first reply may take a moment.\n",
    ),
    "python": (
        85,
        "def fibonacci(n: int) -> list[int]:\n"
        '    """The first n Fibonacci numbers."""\n'
        "    numbers = [0, 1]\n"
        "    while len(numbers) < n:\n"
        "        numbers.append(numbers[-1] + numbers[-2])\n"
        "    return numbers[:n]\n\n\n"
        'if __name__ == "__main__":\n'
        "    for index, value in enumerate(fibonacci(10)):\n"
        '        print(f"{index:>3}: {value}")\n',
    ),
    "javascript": (
        57,
        "document.addEventListener('htmx:wsAfterMessage', (event) => {\n"
        "  const list = document.getElementById('messages');\n"
        "  if (list && list.scrollHeight - list.scrollTop < 200) {\n"
        "    list.scrollTo({ top: list.scrollHeight, behavior: 'smooth' });\n"
        "  }\n"
        "});\n",
    ),
    "chinese": (
        77,
        "对话越来越长时，每次请求都会重新发送全部历史记录，最终超过模型能够读取的上下文长度。"  # noqa: RUF001
        "这时，最早的几轮对话会被首先省略，系统提示和最新的消息始终保留。",  # noqa: RUF001
    ),
    "japanese": (
        78,
        "会話が長くなると、毎回のリクエストで履歴全体が送信されるため、やがてモデルが読める"
        "トークン数を超えてしまいます。その場合は古いやり取りから順に省略されます。",
    ),
    "korean": (
        52,
        "대화가 길어지면 가장 오래된 메시지부터 생략되며, 시스템 프롬프트와 최신 메시지는 항상 유지됩니다.",
    ),
    "mixed": (
        30,
        "Le modèle «Arcee» répond en français, auf Deutsch übersetzt: Größe, naïve café — 12 € pro Monat.",
    ),
    "json": (
        34,
        '{"id": "chatcmpl-42", "choices": [{"index": 0, "delta": {"content": "Hello"}}], "usage": null}',
    ),
    "emoji": (20, "Great job! 🎉🚀 Let's ship it 👍 — thanks 🙏"),
    "digits": (22, "3141592653589793238462643383279502884197 and 2718281828459045"),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_the_estimate_counts_at_least_the_tokens_a_real_tokenizer_does(name):
    tokens, text = SAMPLES[name]
    assert tokens <= estimate_tokens(text) <= 2 * tokens  # never under, and not wildly over


def test_the_estimate_of_a_megabyte_is_linear_and_cheap():
    text = SAMPLES["english"][1] * 4000  # about 1 MB
    assert estimate_tokens(text) == pytest.approx(4000 * estimate_tokens(SAMPLES["english"][1]), rel=0.01)


# --- Fitting -----------------------------------------------------------------------------------------


def conversation(turns: int, size: int = 300) -> list[dict[str, str]]:
    """A system prompt and ``turns`` question-answer pairs of ``size`` characters each, then a question."""
    messages = [{"role": "system", "content": "You are terse."}]
    for n in range(turns):
        messages.append({"role": "user", "content": f"Question {n} " + "q" * size})
        messages.append({"role": "assistant", "content": f"Answer {n} " + "a" * size})
    messages.append({"role": "user", "content": "The newest question"})
    return messages


def test_a_conversation_that_fits_is_sent_whole():
    messages = conversation(3)
    fitted = fit(messages, context_length=32_768)
    assert fitted.messages == messages and fitted.omitted == 0 and fitted.notice == ""


def test_the_oldest_turns_are_left_out_first_and_the_system_prompt_stays():
    messages = conversation(40)
    fitted = fit(messages, context_length=WINDOW)
    assert 0 < fitted.omitted < 80
    assert fitted.messages[0] == messages[0]  # the system prompt
    assert fitted.messages[1:] == messages[1 + fitted.omitted :]  # the newest ones, in order
    assert fitted.messages[-1]["content"] == "The newest question"


def test_what_is_sent_starts_with_a_question_not_an_orphaned_answer():
    messages = conversation(40)
    for window in range(600, 4000, 37):
        kept = fit(messages, context_length=window).messages
        assert kept[1]["role"] == "user", window


def test_a_long_answer_goes_with_its_question():
    messages = [
        {"role": "user", "content": "Old question"},
        {"role": "assistant", "content": "x" * 6000},  # too long for what is left
        {"role": "user", "content": "Newest"},
    ]
    fitted = fit(messages, context_length=2000, max_tokens=500)
    assert fitted.messages == [messages[-1]] and fitted.omitted == 2


def test_room_is_kept_for_the_reply():
    messages = conversation(40)
    for max_tokens in (None, 200, 1000):
        fitted = fit(messages, context_length=WINDOW, max_tokens=max_tokens)
        reserve = max_tokens or WINDOW // 4
        assert fitted.estimated_tokens + reserve + context.REPLY_PRIMING <= WINDOW
        # and nothing more would have fit: the next older turn is over the budget
        next_turn = messages[1 + fitted.omitted - 2 : 1 + fitted.omitted]
        extra = sum(context.message_tokens(m) for m in next_turn)
        assert fitted.estimated_tokens + extra + reserve + context.REPLY_PRIMING > WINDOW
    assert (
        fit(messages, context_length=WINDOW, max_tokens=1000).omitted
        > fit(messages, context_length=WINDOW).omitted
    )


def test_the_reply_share_is_a_quarter_of_the_window_up_to_4096_tokens():
    assert context.reply_reserve(2048, None) == 512
    assert context.reply_reserve(200_000, None) == 4096
    assert context.reply_reserve(200_000, 10_000) == 10_000


def test_a_newest_message_longer_than_the_window_is_sent_alone():
    messages = [*conversation(2), {"role": "user", "content": "z" * 50_000}]
    fitted = fit(messages, context_length=WINDOW)
    assert [m["role"] for m in fitted.messages] == ["system", "user"]
    assert fitted.messages[-1]["content"] == "z" * 50_000
    assert fitted.omitted == len(messages) - 2


def test_the_notice_says_how_many_were_left_out_in_singular_and_plural():
    assert omitted_notice(0) == ""
    assert omitted_notice(1) == (
        "1 earlier message was not sent: the conversation is longer than the model's context window."
    )
    assert omitted_notice(12) == (
        "12 earlier messages were not sent: the conversation is longer than the model's context window."
    )


# --- Context lengths from /models -------------------------------------------------------------------


def test_openrouter_models_report_context_length():
    listing = {
        "data": [
            {
                "id": "arcee-ai/trinity-mini",
                "context_length": 131072,
                "top_provider": {"context_length": 65536},
            },
            {"id": "other/model:free", "top_provider": {"context_length": 8192}},
        ]
    }
    assert parse_models(listing) == {"arcee-ai/trinity-mini": 131072, "other/model:free": 8192}


def test_vllm_models_report_max_model_len():
    listing = {"object": "list", "data": [{"id": "Qwen/Qwen3-8B", "object": "model", "max_model_len": 40960}]}
    assert parse_models(listing) == {"Qwen/Qwen3-8B": 40960}


def test_openai_models_report_none_and_other_names_are_read():
    listing = {
        "data": [
            {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
            {"id": "llama-3.3-70b-versatile", "context_window": 131072},
            {"id": "local-model", "max_context_length": "32768"},
            {"id": "odd", "context_length": True},
            {"id": "negative", "context_length": -5},
        ]
    }
    assert parse_models(listing) == {
        "gpt-4o": None,
        "llama-3.3-70b-versatile": 131072,
        "local-model": 32768,
        "odd": None,
        "negative": None,
    }


def test_a_bare_list_is_read_and_an_answer_without_one_is_refused():
    assert parse_models([{"id": "m", "max_model_len": 4096}]) == {"m": 4096}
    with pytest.raises(ModelListError):
        parse_models({"error": "nope"})


def test_the_simulator_reports_its_context_length(small_model_server):
    answer = httpx.get(f"{small_model_server.base_url}/models").json()
    assert answer["data"][0]["context_length"] == answer["data"][0]["max_model_len"] == WINDOW


# --- The window of a reply ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reply_uses_the_window_its_server_reports_once_the_list_is_cached(settings, small_model):
    settings.CHAT_CONTEXT_LENGTH = 100_000
    providers.model_options()  # as showing the picker does
    _, window = providers.reply_target(None, "demo?tokens=3")
    assert window == WINDOW


@pytest.mark.django_db
def test_a_cold_cache_uses_the_setting_and_asks_in_the_background(settings, small_model):
    settings.CHAT_CONTEXT_LENGTH = 100_000
    requests_before = small_model.stats.requests
    _, window = providers.reply_target(None, "demo")
    assert window == 100_000  # not waited for
    for _ in range(200):
        _, window = providers.reply_target(None, "demo")
        if window == WINDOW:
            break
        time.sleep(0.02)  # polling for the background answer, not a wait the test relies on
    assert window == WINDOW
    assert small_model.stats.requests == requests_before + 1  # asked once


@pytest.mark.django_db
def test_a_provider_without_a_reported_window_uses_its_own_setting(settings, upstream):
    settings.CHAT_CONTEXT_LENGTH = 100_000
    provider = Provider.objects.create(name="Local", base_url=upstream.base_url, context_length=8192)
    providers.check_model_lists([provider])  # the session's simulator reports no context length
    endpoint, window = providers.reply_target(provider.pk, "demo")
    assert endpoint.provider_id == provider.pk and window == 8192
    provider.context_length = None
    provider.save()
    assert providers.reply_target(provider.pk, "demo")[1] == 100_000


# --- The history, in one query ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_history_of_a_long_conversation_is_read_in_one_query(
    alice_conversation, django_assert_num_queries
):
    for n in range(300):
        last = stored_turn(alice_conversation, f"Question {n}", f"Answer {n}")
    other_branch = Message.objects.create(  # a sibling of the last answer: not on the branch
        conversation=alice_conversation, parent_id=last.parent_id, role="assistant", content="Other version"
    )
    newest = Message.objects.create(
        conversation=alice_conversation, parent=last, role="user", content="Newest"
    )
    reply = Message.objects.create(conversation=alice_conversation, parent=newest, role="assistant")
    reply = Message.objects.select_related("conversation").get(pk=reply.pk)
    with django_assert_num_queries(1):
        history = selectors.reply_history(reply=reply)
    assert len(history) == 601  # no system prompt by default
    assert history[0] == {"role": "user", "content": "Question 0"}
    assert history[-2:] == [
        {"role": "assistant", "content": "Answer 299"},
        {"role": "user", "content": "Newest"},
    ]
    assert other_branch.content not in [m["content"] for m in history]


@pytest.mark.django_db
def test_the_history_leaves_out_empty_answers(alice_conversation):
    stored_turn(alice_conversation, "First", "", status=Message.Status.ERROR)
    last = stored_turn(alice_conversation, "Second", "Answer")
    reply = Message.objects.create(conversation=alice_conversation, parent=last, role="assistant")
    assert [m["content"] for m in selectors.reply_history(reply=reply)] == ["First", "Second", "Answer"]


# --- Through the socket, against a model with a small window ------------------------------------------


def fill(conversation, turns: int) -> None:
    for n in range(turns):
        stored_turn(conversation, f"Question {n}: " + "why? " * 60, f"Answer {n}: " + "because. " * 40)


@pytest.mark.django_db(transaction=True)
async def test_a_long_conversation_sends_fewer_messages_and_the_reply_says_so(
    alice, alice_conversation, small_model, client
):
    await asyncio.to_thread(providers.model_options)  # the picker's list: the window is known
    await database_sync_to_async(fill)(alice_conversation, 30)  # 60 messages of about 300 bytes
    page, _ = await join(alice, alice_conversation)
    await send(page, "And now?", "demo?tokens=5")
    frames = await frames_until_final(page)
    await streaming.wait_all()
    sent = small_model.stats.last_chat_body["messages"]
    reply = await latest_reply(alice_conversation)
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[-1] == {"role": "user", "content": "And now?"}
    assert sent[1]["role"] == "user" and len(sent) < 62
    assert reply.omitted_messages == 62 - len(sent) > 1
    notice = omitted_notice(reply.omitted_messages)
    assert FINAL.search(frames[-1]) and notice in frames[-1]  # live: the ending's footer
    await page.disconnect()
    await database_sync_to_async(client.force_login)(alice)
    reloaded = await database_sync_to_async(client.get)(alice_conversation.get_absolute_url())
    assert notice in reloaded.content.decode()  # and on reload


@pytest.mark.django_db(transaction=True)
async def test_a_short_conversation_is_sent_whole_without_a_notice(alice, alice_conversation, small_model):
    await asyncio.to_thread(providers.model_options)
    page, _ = await join(alice, alice_conversation)
    await send(page, "Hello", "demo?tokens=5")
    frames = await frames_until_final(page)
    await streaming.wait_all()
    assert len(small_model.stats.last_chat_body["messages"]) == 2
    assert (await latest_reply(alice_conversation)).omitted_messages == 0
    assert "were not sent" not in frames[-1] and "was not sent" not in frames[-1]
    await page.disconnect()


@pytest.mark.django_db
def test_the_provider_form_offers_the_context_window(admin_client):
    page = admin_client.get("/admin/chat/provider/add/").content.decode()
    assert 'name="context_length"' in page and "Context window (tokens)" in page
