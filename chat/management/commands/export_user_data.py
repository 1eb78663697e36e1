"""Everything of one user, for a request for their data: their conversations and their account.

Two files. ``FILE`` is exactly what the user's own "Export all" gives, so it imports again as it
is (the importer takes a JSON list of conversations and nothing else). The account record (who,
since when, their preferences) goes beside it in ``FILE`` with ``.account.json`` for ``.json``.
Neither holds a password hash or an API key. Both are written under temporary names and renamed
when complete, readable by their owner only, and never over an existing file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TextIO

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import retention
from chat.management.commands.purge_conversations import plural, user_named


def account_path(output: Path) -> Path:
    """``alice.json`` -> ``alice.account.json``; a name without ``.json`` gets ``.account.json`` added."""
    stem = output.name[: -len(".json")] if output.name.endswith(".json") else output.name
    return output.with_name(f"{stem}.account.json")


class Command(BaseCommand):
    help = (
        "Export one user's conversations (as their own 'Export all' gives them, importable) to FILE "
        "and their account record to FILE with .account.json."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--output",
            metavar="FILE",
            help="Where to write the conversations (default: export-USERNAME.json).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = user_named(options["username"])
        output = Path(options["output"] or f"export-{user.get_username()}.json")
        account = account_path(output)
        for path in (output, account):
            if path.exists():
                raise CommandError(f"{path} already exists; choose another --output or move it away.")
        if not output.parent.is_dir():
            raise CommandError(f"There is no directory {output.parent} to write {output.name} in.")
        pending: dict[Path, Path] = {}  # each file as it is being written -> its name once complete
        try:
            with _partial(output, pending) as out:
                count = async_to_sync(retention.write_conversations)(user, out)
            with _partial(account, pending) as out:
                record = {**retention.account_record(user), "conversations_file": output.name}
                json.dump(record, out, ensure_ascii=False, indent=1)
                out.write("\n")
            for partial, path in pending.items():
                partial.rename(path)
            pending.clear()
        finally:
            for partial in pending:  # something failed: leave nothing half written
                partial.unlink(missing_ok=True)
        self.stdout.write(
            f"Exported {plural(count, 'conversation')} of {user.get_username()} to {output}; "
            f"the account record is in {account}."
        )


def _partial(path: Path, pending: dict[Path, Path]) -> TextIO:
    """A new file beside ``path``, readable by its owner only, under a temporary name until complete."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    pending[Path(name)] = path
    return os.fdopen(descriptor, "w", encoding="utf-8")
