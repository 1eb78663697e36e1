"""Search over 100,000 messages, on SQLite (the embedded default) and on PostgreSQL.

Each database gets a fresh copy of the schema (``migrate``), then one user's 100,000 messages in
1,000 conversations (and another user's 10,000, so the owner filter has something to leave out):
about 60 words each, drawn from a 5,000-word vocabulary with Zipf's law, as natural text is. The
full-text index is written the way imports write it (``search.index_messages`` in bulk). Then
``search.search`` (the index query, reading the hits and making their snippets) answers four kinds
of query many times: the most common word, a rare word, two words, a prefix, and a word
nobody wrote.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import statistics
import subprocess
import time
from pathlib import Path

from bench import pg, procs
from bench.report import Report, log, verdict

MESSAGES = 100_000
CONVERSATIONS = 1_000
OTHER_MESSAGES = 10_000
WORDS_PER_MESSAGE = 60
VOCABULARY = 5_000
TARGET_MS = 50.0


def figures(*, pg_url: str, pg_database: str, workdir: Path, repeats: int, report: Report) -> None:
    """Seed, index and query each database in a child process; add a row per database and query."""
    databases = pg.each_database(
        pg_url, pg_database, str(workdir / "search.sqlite3"), report=report, figure="Search"
    )
    for name, url in databases:
        try:
            log(f"search: {name}, {MESSAGES:,} messages")
            env = procs.base_env(DATABASE_URL=url)
            procs.manage(env, "migrate", "--noinput")
            done = subprocess.run(
                [procs.PYTHON, "-c", f"from bench.search import worker; worker({repeats})"],
                cwd=procs.ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            _rows(name, result, report)
        except Exception as exc:
            report.failed(f"Search ({name})", exc)


def _rows(name: str, result: dict, report: Report) -> None:
    worst = 0.0
    for label, times in result["queries"].items():
        median, p95 = statistics.median(times), _p95(times)
        worst = max(worst, p95)
        report.row(
            f"Search over {MESSAGES // 1000}k messages, {name}: {label}",
            f"{median:.1f} ms median, {p95:.1f} ms p95 ({result['hits'][label]} hits shown)",
            f"<= {TARGET_MS:.0f} ms",
            verdict(p95 <= TARGET_MS),
        )
    report.details.append(
        f"Search, {name}: seeded {result['messages']:,} messages in {result['seed_s']:.1f} s, "
        f"indexed them in {result['index_s']:.1f} s "
        f"({result['messages'] / result['index_s']:,.0f} messages/s); "
        f"queries: {', '.join(f'{k} = {v!r}' for k, v in result['words'].items())}."
    )


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def worker(repeats: int) -> None:
    """In a child process on ``DATABASE_URL``: seed, index, query; print the figures as JSON."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from chat import search
    from chat.models import Conversation, Message

    rng = random.Random(7)
    vocabulary = [_word(rng) for _ in range(VOCABULARY)]
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(VOCABULARY)))
    User = get_user_model()
    alice = User.objects.create_user("search-bench-alice")
    bob = User.objects.create_user("search-bench-bob")
    started = time.perf_counter()
    ids: list[int] = []
    for owner, count in ((alice, MESSAGES), (bob, OTHER_MESSAGES)):
        per = max(1, count // CONVERSATIONS)
        conversations = Conversation.objects.bulk_create(
            [
                Conversation(owner=owner, title=" ".join(rng.choices(vocabulary, cum_weights=weights, k=4)))
                for _ in range(count // per)
            ]
        )
        for conversation in conversations:
            rows = [
                Message(
                    conversation=conversation,
                    role="user" if n % 2 == 0 else "assistant",
                    content=" ".join(rng.choices(vocabulary, cum_weights=weights, k=WORDS_PER_MESSAGE)),
                )
                for n in range(per)
            ]
            ids += [row.pk for row in Message.objects.bulk_create(rows)]
        search.index_title(c.pk for c in conversations)
    seeded = time.perf_counter() - started
    started = time.perf_counter()
    search.index_messages(ids)
    indexed = time.perf_counter() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    rare = vocabulary[VOCABULARY - 1]
    words = {
        "most common word": vocabulary[0],
        "rare word": rare,
        "two words": f"{vocabulary[3]} {vocabulary[40]}",
        "prefix": vocabulary[10][:3],
        "no match": "qqqzzz",  # a typo: nothing matches, the worst case for a newest-first search
    }
    queries: dict[str, list[float]] = {}
    hits: dict[str, int] = {}
    for label, query in words.items():
        search.search(user=alice, query=query)  # warm
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            found = search.search(user=alice, query=query)
            times.append((time.perf_counter() - began) * 1000)
        queries[label] = times
        hits[label] = len(found)
    print(
        json.dumps(
            {
                "messages": len(ids),
                "seed_s": seeded,
                "index_s": indexed,
                "queries": queries,
                "hits": hits,
                "words": words,
            }
        )
    )


def _word(rng: random.Random) -> str:
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9)))
