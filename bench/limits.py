"""``--only limits``: what the limit check costs each message, on the database and on Redis.

In a child process per database (SQLite, and PostgreSQL when reachable), one user with a history
(1,000 replies, 20 of them in the last minute, a day of usage rows) is admitted ``ADMISSIONS``
times by ``limits.admit``, inside a transaction as the send path runs it, and the transaction is
rolled back so every admission sees the same counts. Three ways:

- no limit set (the default): one query, for the user's groups' limits;
- every limit set, the rates counted in the database (no ``REDIS_URL``);
- every limit set, the rates counted in Redis (database 8 of the machine's Redis, emptied first).

The figure is the median time of one admission, transaction included (as ``no limit set`` shows,
that and the one query are there whatever the limits); the target is on what setting every limit
adds to it. The rest of storing a message is unchanged.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from bench import pg, procs
from bench.report import Report, log, verdict

ADMISSIONS = 500
HISTORY = 1_000
TARGET_MS = 2.0  # added by the limits: a small share of the ~10 ms a send takes to reach the upstream
REDIS_URL = "redis://127.0.0.1:6379/8"


def figures(*, pg_url: str, pg_database: str, workdir: Path, report: Report) -> None:
    databases = pg.each_database(
        pg_url, pg_database, str(workdir / "limits.sqlite3"), report=report, figure="Limit check"
    )
    for name, url in databases:
        try:
            log(f"limits: {name}, {ADMISSIONS} admissions each way")
            env = procs.base_env(DATABASE_URL=url)
            procs.manage(env, "migrate", "--noinput")
            done = subprocess.run(
                [procs.PYTHON, "-c", "from bench.limits import worker; worker()"],
                cwd=procs.ROOT,
                env=dict(env, BENCH_REDIS_URL=REDIS_URL),
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            base = statistics.median(result["no limit set"])
            for way, times in result.items():
                if isinstance(times, str):
                    report.row(f"Limit check per message, {name}: {way}", times)
                    continue
                median = statistics.median(times)
                added = median - base
                report.row(
                    f"Limit check per message, {name}: {way}",
                    f"{median:.2f} ms median (+{added:.2f} ms over no limit), "
                    f"{sorted(times)[int(len(times) * 0.95)]:.2f} ms p95",
                    f"<= {TARGET_MS:g} ms added" if way != "no limit set" else "",
                    verdict(added <= TARGET_MS) if way != "no limit set" else "",
                )
        except Exception as exc:
            report.failed(f"Limit check ({name})", exc)


def worker() -> None:
    """In a child process on ``DATABASE_URL``: seed one user's history, time admissions, print JSON."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    django.setup()
    from datetime import timedelta

    import redis
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from chat import limits, usage
    from chat.models import Conversation, Message, UsageDay

    user = get_user_model().objects.create_user("limits-bench")
    conversation = Conversation.objects.create(owner=user, title="history", model="demo")
    Message.objects.bulk_create(
        Message(conversation=conversation, role="assistant", status="complete", content="x", model="demo")
        for _ in range(HISTORY)
    )
    recent = Message.objects.filter(conversation=conversation).order_by("-id")[:20]
    old = timezone.now() - timedelta(hours=2)
    Message.objects.exclude(pk__in=list(recent.values_list("pk", flat=True))).update(created_at=old)
    today = usage.today()
    UsageDay.objects.create(user=user, day=today, model="demo", requests=HISTORY, prompt_tokens=10_000)

    def timed() -> list[float]:
        times = []
        for _ in range(ADMISSIONS):
            started = time.perf_counter()
            with transaction.atomic():
                refusal = limits.admit(user_id=user.pk)
                transaction.set_rollback(True)
            times.append((time.perf_counter() - started) * 1000)
            assert refusal is None, refusal.text
        return times

    result: dict[str, list[float] | str] = {}
    settings.REDIS_URL = ""
    result["no limit set"] = timed()
    settings.CHAT_LIMIT_MESSAGES_PER_MINUTE = 10 * ADMISSIONS
    settings.CHAT_LIMIT_MESSAGES_PER_DAY = 100 * ADMISSIONS
    settings.CHAT_LIMIT_CONCURRENT_REPLIES = 5
    settings.CHAT_LIMIT_TOKENS_PER_DAY = 10**9
    settings.CHAT_LIMIT_TOKENS_PER_MONTH = 10**9
    result["every limit, rates in the database"] = timed()
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        result["every limit, rates in Redis"] = f"skipped: Redis is not reachable ({exc})"
    else:
        settings.REDIS_URL = os.environ["BENCH_REDIS_URL"]
        result["every limit, rates in Redis"] = timed()
        client.flushdb()
    print(json.dumps(result))
