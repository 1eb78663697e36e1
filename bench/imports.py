"""``--only import``: a large export file imported in bounded memory, against a tiny one.

An Open WebUI "Export chats" file is generated, written record by record to a temporary file
(about 100 MB with 10,000 conversations; ``--quick``: 20 MB with 2,000): each conversation holds
four turns of Markdown (a paragraph, a list, a code block) and one regenerated reply, so every
record is a tree with a branch, as real exports are. A child process (``worker``) imports it
with ``importing.import_file`` into a fresh SQLite database migrated for it, the way the import
page does, and reports its times and ``ru_maxrss``. A second child imports a file of 10
conversations of the same kind: its peak memory is the baseline (Python, Django and one
conversation), so the difference shows what the file's size costs.

Reported: the import's wall time and conversations/s, the time of each pass (checking the file
with no writes; writing it in one transaction, which holds SQLite's write lock), the longest gap
between two progress reports, and both peaks.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import procs
from bench.report import Report, log, verdict

FULL_CONVERSATIONS = 10_000
FULL_BYTES = 100_000_000
QUICK_CONVERSATIONS = 2_000
QUICK_BYTES = 20_000_000
BASELINE_CONVERSATIONS = 10
TURNS = 4
MEMORY_GROWTH_LIMIT_MIB = 30  # peak of the large import over the tiny one's

_PARAGRAPH = (
    "The import reads one conversation at a time, so the memory it needs does not depend on the size "
    "of the file. Each record is checked, then stored with its branches and rendered Markdown. "
)
_CODE = "```python\ndef mean(values):\n    return sum(values) / len(values)\n```\n"


def figures(*, quick: bool, workdir: Path, report: Report) -> None:
    """Generate, import in a child, compare with a tiny import; add the rows to ``report``."""
    conversations, size = (QUICK_CONVERSATIONS, QUICK_BYTES) if quick else (FULL_CONVERSATIONS, FULL_BYTES)
    large = workdir / "import-large.json"
    tiny = workdir / "import-tiny.json"
    started = time.perf_counter()
    written = write_open_webui_export(large, conversations=conversations, target_bytes=size)
    log(
        f"import: wrote {written / 1e6:.0f} MB ({conversations:,} conversations) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    per_conversation = size // conversations
    write_open_webui_export(tiny, conversations=BASELINE_CONVERSATIONS, target_bytes=per_conversation * 10)
    try:
        log("import: the tiny file (baseline)")
        baseline = _import_in_child(tiny, workdir / "import-tiny.sqlite3")
        log(f"import: {written / 1e6:.0f} MB in a child process")
        result = _import_in_child(large, workdir / "import-large.sqlite3")
    finally:
        large.unlink(missing_ok=True)
        tiny.unlink(missing_ok=True)
    label = f"{written / 1e6:.0f} MB, {conversations:,} conversations, Open WebUI"
    rate = result["conversations"] / result["total_s"]
    report.row(f"Import {label}: time", f"{result['total_s']:.1f} s ({rate:,.0f} conversations/s)")
    report.row(
        f"Import {label}: SQLite write lock held",
        f"{result['write_s']:.1f} s (checking pass before it: {result['check_s']:.1f} s, no writes)",
    )
    growth = (result["maxrss_kib"] - baseline["maxrss_kib"]) / 1024
    report.row(
        f"Import {label}: peak memory (ru_maxrss)",
        f"{result['maxrss_kib'] / 1024:.0f} MiB; a {BASELINE_CONVERSATIONS}-conversation file: "
        f"{baseline['maxrss_kib'] / 1024:.0f} MiB (+{growth:.0f} MiB)",
        f"+<= {MEMORY_GROWTH_LIMIT_MIB} MiB",
        verdict(growth <= MEMORY_GROWTH_LIMIT_MIB),
    )
    report.row(
        f"Import {label}: longest gap between progress reports",
        f"{result['longest_gap_s'] * 1000:.0f} ms",
        "<= 1000 ms",
        verdict(result["longest_gap_s"] <= 1.0),
    )
    report.details.append(
        f"Import of {written:,} bytes: {result['conversations']:,} conversations, {result['messages']:,} "
        f"messages; {result['reports']} progress reports. Each import runs in a child process on a fresh "
        "SQLite database (WAL, as the app's settings); peaks are the child's ru_maxrss, Django included."
    )


def _import_in_child(path: Path, database: Path) -> dict[str, Any]:
    env = procs.base_env(DATABASE_URL=f"sqlite:///{database}")
    procs.manage(env, "migrate", "--noinput")
    done = subprocess.run(
        [procs.PYTHON, "-c", f"from bench.imports import worker; worker({str(path)!r})"],
        cwd=procs.ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"import child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker(path: str) -> None:
    """In a child process on ``DATABASE_URL``: import ``path`` for a new user; print figures as JSON."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    django.setup()
    from django.contrib.auth import get_user_model

    from chat import importing

    user = get_user_model().objects.create_user("import-bench")
    times: dict[str, float] = {}
    reports = 0
    longest_gap = 0.0
    last = started = time.perf_counter()

    def progress(state: importing.ImportProgress) -> None:
        nonlocal reports, longest_gap, last
        now = time.perf_counter()
        reports += 1
        longest_gap = max(longest_gap, now - last)
        last = now
        times.setdefault(state.phase, now)

    with open(path, "rb") as file:
        result = importing.import_file(user=user, file=file, progress=progress, every=0.5)
    ended = time.perf_counter()
    longest_gap = max(longest_gap, ended - last)
    writing = times.get(importing.WRITING, ended)
    print(
        json.dumps(
            {
                "conversations": result.conversations,
                "messages": result.messages,
                "total_s": ended - started,
                "check_s": writing - started,
                "write_s": ended - writing,
                "reports": reports,
                "longest_gap_s": longest_gap,
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


def write_open_webui_export(path: Path, *, conversations: int, target_bytes: int) -> int:
    """Write an Open WebUI export of about ``target_bytes`` record by record; return its size."""
    per_record = target_bytes / conversations
    small, large = (len(json.dumps(open_webui_record(0, repeats=n))) for n in (1, 3))
    repeats = max(1, round(1 + (per_record - small) / ((large - small) / 2)))
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for number, record in enumerate(_records(conversations, repeats)):
            out.write(",\n" if number else "\n")
            json.dump(record, out, ensure_ascii=False)
        out.write("\n]\n")
    return path.stat().st_size


def _records(conversations: int, repeats: int) -> Iterator[dict[str, Any]]:
    for number in range(conversations):
        yield open_webui_record(number, repeats=repeats)


def open_webui_record(number: int, *, repeats: int) -> dict[str, Any]:
    """One conversation as Open WebUI exports it: ``TURNS`` turns, the last reply regenerated once."""
    when = 1_700_000_000 + number * 60
    messages: dict[str, dict[str, Any]] = {}
    parent = None
    for turn in range(TURNS):
        question = f"Question {turn + 1} of conversation {number}: " + _PARAGRAPH * repeats
        answer = f"## Answer {turn + 1}\n\n" + _PARAGRAPH * repeats + "\n\n- one\n- two\n\n" + _CODE
        user_id = f"c{number}-u{turn}"
        messages[user_id] = _owui_message(user_id, parent, "user", question, when + turn)
        if parent is not None:
            messages[parent]["childrenIds"].append(user_id)
        reply_id = f"c{number}-a{turn}"
        messages[reply_id] = _owui_message(reply_id, user_id, "assistant", answer, when + turn)
        messages[user_id]["childrenIds"].append(reply_id)
        parent = reply_id
    # A regenerated last reply: the tree has a branch, and the newer reply is the one shown.
    question = f"c{number}-u{TURNS - 1}"
    again = f"c{number}-a{TURNS - 1}-again"
    messages[again] = _owui_message(again, question, "assistant", "Another answer.\n\n" + _CODE, when + TURNS)
    messages[question]["childrenIds"].append(again)
    return {
        "id": f"chat-{number}",
        "user_id": "bench",
        "title": f"Generated conversation {number}",
        "chat": {
            "id": "",
            "title": f"Generated conversation {number}",
            "models": ["bench-model"],
            "history": {"messages": messages, "currentId": again},
            "messages": list(messages.values()),
            "timestamp": when * 1000,
        },
        "updated_at": when + TURNS,
        "created_at": when,
        "archived": False,
        "pinned": False,
        "meta": {},
        "folder_id": None,
    }


def _owui_message(key: str, parent: str | None, role: str, text: str, when: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": key,
        "parentId": parent,
        "childrenIds": [],
        "role": role,
        "content": text,
        "timestamp": when,
    }
    if role == "assistant":
        message["model"] = "bench-model"
        message["done"] = True
        message["output"] = [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
        ]
    return message
