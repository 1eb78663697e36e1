"""Arbitrary input on the production profile: real Daphne workers, Redis, and PostgreSQL.

PostgreSQL refuses NUL in text and every driver refuses lone surrogates, so this is where a reply or
a request carrying them would fail. Socket frames, the forms, query strings and the upstream's
chunks, drawn by Hypothesis: no worker logs a traceback, no socket closes, nothing is lost, and
what a page was shown is what the database holds.
"""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chat.simulator import reply_text
from chat.storable import REPLACEMENT, storable
from chat.turns import NOTHING_TO_STOP
from tests.dom import canonical, rendered
from tests.fuzzing import LoopRunner, any_text, form_body, form_values, fuzz, json_values
from tests.production.support import Page, Site, cookie_header, eventually, start_conversation
from tests.test_forms_fuzz import PAGES
from tests.test_socket_fuzz import frames_of

pytestmark = [pytest.mark.production, pytest.mark.live]


@pytest.fixture
def conversation(site: Site, runner: LoopRunner) -> str:
    conversation = runner.run(start_conversation(site.a, site.cookies, "Seed", "demo?tokens=2&tps=0"))
    runner.run(settled(site, conversation))
    return conversation


async def settled(site: Site, conversation: str) -> None:
    async def idle() -> bool:
        rows = await site.db.rows(
            "SELECT 1 FROM chat_message WHERE conversation_id = %s::uuid AND status = 'streaming'",
            conversation,
        )
        return not rows

    await eventually(idle, within=20, what="every reply of the conversation to end")


def broken(site: Site) -> list[str]:
    """Lines of the workers' output that say something broke."""
    lines = "".join(worker.output() for worker in site.workers).splitlines()
    return [line for line in lines if "Traceback" in line or " ERROR " in line or "Exception inside" in line]


# --- The socket --------------------------------------------------------------------------------------


async def exchange(site: Site, conversation: str, frame: str | bytes, worker_index: int) -> None:
    worker = site.workers[worker_index % len(site.workers)]
    page = await Page.open(worker, conversation, site.cookies)
    try:
        shown = len(page.frames)
        await page.ws.send(frame)
        await page.wait(lambda: len(page.frames) > shown, within=10, what="an answer to the frame")
        await settled(site, conversation)
        shown = len(page.frames)
        await page.stop()
        await page.wait(
            lambda: any(NOTHING_TO_STOP in f for f in page.frames[shown:]),
            within=10,
            what="the probe's answer",
        )
    finally:
        await page.close()


def _sendable(frame: str | bytes) -> str | bytes:
    """A text frame as a browser can send it (UTF-8); JSON frames carry surrogates as escapes."""
    return frame if isinstance(frame, bytes) else frame.encode("utf-8", "replace").decode()


@fuzz(max_examples=40)
@given(data=st.data())
def test_socket_frames_on_two_workers(site, conversation, runner, data):
    ids = [row["id"] for row in runner.run(site.db.rows("SELECT id FROM chat_message"))]
    frame = data.draw(frames_of(st.sampled_from(ids)))
    runner.run(exchange(site, conversation, _sendable(frame), data.draw(st.integers(0, 1))))
    assert not broken(site), "\n".join(broken(site))


@pytest.mark.parametrize(
    "frame",
    [
        json.dumps({"action": ["send"]}),
        json.dumps({"text": "lone \ud83d and nul \x00", "client_id": str(uuid.uuid4())}),
        json.dumps({"text": "ok", "model": "demo\x00"}),
        json.dumps({"action": "switch", "message_id": 2**70}),
        "[" * 100_000,
        b"\x00\xff",
    ],
    ids=lambda frame: repr(frame[:24]),
)
def test_socket_frames_that_once_broke_a_worker(site, conversation, runner, frame):
    runner.run(exchange(site, conversation, frame, 0))
    assert not broken(site), "\n".join(broken(site))


# --- The upstream's chunks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "extra"),
    [
        ("nul-3", f"NUL:{REPLACEMENT}."),
        ("surrogate-3", f"cut:{REPLACEMENT}."),
        ("split-surrogate-3", "emoji:😀."),
    ],
)
def test_a_reply_carrying_nul_or_surrogates_completes_on_postgresql(site, conversation, runner, fault, extra):
    words = re.findall(r"\s*\S+", reply_text([{"role": "user", "content": "Say it"}], 6))
    expected = "".join(words[:3]) + extra + "".join(words[3:])
    row, shown = runner.run(
        _send_and_follow(site, conversation, "Say it", f"demo?tokens=6&tps=0&fault={fault}")
    )
    assert (row["status"], row["content"]) == ("complete", expected)
    assert shown == rendered(expected) == canonical(row["content_html"])
    assert not broken(site), "\n".join(broken(site))


async def _send_and_follow(site: Site, conversation: str, text: str, model: str) -> tuple[dict, str]:
    page = await Page.open(site.b, conversation, site.cookies)
    try:
        known = set(page.roles)
        await page.send(text, model)
        await page.wait(lambda: page.new_replies(known), within=10, what="the new reply")
        (reply_id,) = page.new_replies(known)
        await page.wait(lambda: reply_id in page.endings, within=20, what="the reply's ending")
        return await site.db.reply(reply_id), page.texts[reply_id]
    finally:
        await page.close()


@pytest.fixture
def chunks_provider(site, sim, runner) -> int:
    """A provider on the simulator whose extra request fields say which chunks to stream."""
    (row,) = runner.run(
        site.db.rows(
            "INSERT INTO chat_provider (name, base_url, api_key_encrypted, enabled, all_models, model_ids, "
            "extra_fields, stream_usage, created_at, updated_at) "
            "VALUES (%s, %s, '', true, false, 'demo', '{}'::jsonb, true, now(), now()) RETURNING id",
            f"Chunks {uuid.uuid4().hex[:6]}",
            sim.base_url,
        )
    )
    return row["id"]


@fuzz(max_examples=40)
@given(pieces=st.lists(any_text.filter(bool), min_size=1, max_size=6))
@example(pieces=["a\x00", "\ud83d", "\ude00", "\udead"])
def test_whatever_the_chunks_carry_postgresql_stores_what_was_shown(
    site, conversation, chunks_provider, runner, pieces
):
    extra = json.dumps({"simulator": {"chunks": json.dumps(pieces)}})
    runner.run(
        site.db.execute(
            "UPDATE chat_provider SET extra_fields = %s::jsonb WHERE id = %s", extra, chunks_provider
        )
    )
    row, shown = runner.run(_send_and_follow(site, conversation, "go", f"p{chunks_provider}:demo"))
    assert row["status"] == "complete", row["error"]
    assert row["content"] == storable("".join(pieces))
    assert shown == rendered(row["content"]) == canonical(row["content_html"])
    assert not broken(site), "\n".join(broken(site))


# --- Forms and query strings ------------------------------------------------------------------------


def post(site: Site, path: str, fields: dict, *, signed_in: bool = True) -> int:
    cookies = site.cookies if signed_in else {"csrftoken": site.cookies["csrftoken"]}
    headers = {
        "Cookie": cookie_header(cookies),
        "X-CSRFToken": site.cookies["csrftoken"],
        "Content-Type": "application/x-www-form-urlencoded",
        "Referer": site.a.url + "/",
    }
    with httpx.Client(base_url=site.a.url, timeout=20) as client:
        return client.post(path, content=form_body(fields), headers=headers).status_code


@fuzz(max_examples=40)
@given(text=form_values, model=form_values | st.just("demo?tokens=2&tps=0"))
@example(text="nul \x00 and \ud83d", model="demo?tokens=2&tps=0")
def test_new_chat_form_on_postgresql(site, runner, text, model):
    assert post(site, "/c/new/", {"text": text, "model": model}) in (303, 400)
    assert not broken(site), "\n".join(broken(site))


@fuzz(max_examples=40)
@given(system_prompt=form_values, temperature=form_values, max_tokens=form_values)
def test_settings_form_on_postgresql(site, conversation, system_prompt, temperature, max_tokens):
    fields = {"system_prompt": system_prompt, "temperature": temperature, "max_tokens": max_tokens}
    assert post(site, f"/c/{conversation}/settings/", fields) in (303, 400)
    assert not broken(site), "\n".join(broken(site))


@fuzz(max_examples=40)
@given(username=form_values, password=form_values)
@example(username="prod\x00", password="x")
def test_login_form_on_postgresql(site, username, password):
    status = post(site, "/accounts/login/", {"username": username, "password": password}, signed_in=False)
    assert status in (200, 302)
    assert not broken(site), "\n".join(broken(site))


@fuzz(max_examples=40)
@given(name=form_values, model_ids=form_values, extra_fields=form_values | json_values.map(json.dumps))
@example(name="Escapes", model_ids="m", extra_fields='{"a\\u0000": ["\\udead"]}')
def test_admin_provider_form_on_postgresql(site, name, model_ids, extra_fields):
    fields = {
        "name": name,
        "base_url": "http://127.0.0.1:9/v1",
        "model_ids": model_ids,
        "extra_fields": extra_fields,
    }
    assert post(site, "/admin/chat/provider/add/", fields) in (200, 302)
    assert not broken(site), "\n".join(broken(site))


@fuzz(max_examples=40)
@given(page=st.sampled_from(PAGES), query=st.binary(max_size=30))
@example(page="/admin/chat/message/", query=b"q=\x00")
@example(page="/admin/chat/conversation/", query=b"model=\x00")
def test_query_strings_on_postgresql(site, page, query):
    with httpx.Client(base_url=site.a.url, timeout=20) as client:
        response = client.get(
            f"{page}?{quote_from_bytes(query, safe='=&')}", headers={"Cookie": cookie_header(site.cookies)}
        )
    assert response.status_code in (200, 302, 400)
    assert not broken(site), "\n".join(broken(site))
