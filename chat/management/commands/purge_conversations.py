"""The retention policy, run from cron or a systemd timer: delete conversations nobody has touched in N days.

N is ``--older-than`` or else ``CHAT_RETENTION_DAYS``. The work is in ``chat.retention``; this
command reads the options, says what would go, asks before deleting, and prints the counts.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from chat import retention

NOT_CONFIRMED = "Nothing was deleted: pass --yes to delete without a question, or --dry-run to look first."


def confirm(question: str, *, stdin: TextIO, stdout: OutputWrapper) -> bool:
    """Ask ``question`` on a terminal; without one (cron, a pipe) there is nobody to answer: refuse."""
    if not stdin.isatty():
        raise CommandError(NOT_CONFIRMED)
    stdout.write(f"{question} Type 'yes' to go on: ", ending="")
    stdout.flush()
    return stdin.readline().strip().lower() == "yes"


def user_named(username: str) -> Any:
    try:
        return get_user_model()._default_manager.get_by_natural_key(username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"There is no user {username!r}.") from None


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def days_from(value: str, source: str) -> int:
    try:
        days = int(value)
    except (TypeError, ValueError):
        raise CommandError(f"{source} must be a whole number of days, not {value!r}.") from None
    if days < 0:
        raise CommandError(f"{source} must be 0 or more days, not {days}.")
    return days


class Command(BaseCommand):
    help = (
        "Delete conversations last updated more than N days ago (--older-than, else CHAT_RETENTION_DAYS), "
        "with their messages and search entries. Conversations writing a reply are kept."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", metavar="DAYS", help="Days without activity (overrides CHAT_RETENTION_DAYS)."
        )
        parser.add_argument("--user", metavar="USERNAME", help="Only this user's conversations.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be deleted; delete nothing."
        )
        parser.add_argument("--yes", action="store_true", help="Delete without asking (for cron).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["older_than"] is not None:
            days = days_from(options["older_than"], "--older-than")
        elif settings.CHAT_RETENTION_DAYS:
            days = settings.CHAT_RETENTION_DAYS
        else:
            raise CommandError(
                "No retention period: CHAT_RETENTION_DAYS is empty (keep forever). "
                "Set it, or pass --older-than DAYS."
            )
        owner = user_named(options["user"]) if options["user"] else None
        before = retention.cutoff(days)
        whose = f" of {owner.get_username()}" if owner is not None else ""
        what = f"conversations{whose} last updated more than {plural(days, 'day')} ago"
        found = retention.tally(retention.expired(before=before, owner=owner))
        kept = retention.kept_writing(before=before, owner=owner)
        if kept:
            self.stdout.write(f"Keeping {plural(kept, 'conversation')}: a reply is being written in them.")
        summary = f"{plural(found.conversations, 'conversation')} ({plural(found.messages, 'message')})"
        if options["dry_run"]:
            self.stdout.write(f"Would delete {summary}: the {what}. Nothing was deleted (dry run).")
            return
        if not found.conversations:
            self.stdout.write(f"Nothing to delete: no {what}.")
            return
        if not options["yes"]:
            stdin = options.get("stdin") or sys.stdin
            if not confirm(
                f"Delete {summary}: the {what}? This cannot be undone.", stdin=stdin, stdout=self.stdout
            ):
                self.stdout.write("Nothing was deleted.")
                return
        deleted = async_to_sync(retention.purge)(before=before, owner=owner)
        self.stdout.write(
            f"Deleted {plural(deleted.conversations, 'conversation')} "
            f"({plural(deleted.messages, 'message')}): the {what}."
        )
