"""Erase one user: their conversations (leaving no trace), their preferences and, by default, the account.

For a request to be forgotten, or an account closed for good. ``--keep-account`` keeps the account
(and its usage counts, which the limits read) and deletes the rest. Superusers are refused unless
``--include-superuser``, so a mistyped name cannot take the site's administrator with it. The work
is in ``chat.retention``.
"""

from __future__ import annotations

import sys
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import retention
from chat.management.commands.purge_conversations import confirm, plural, user_named


class Command(BaseCommand):
    help = "Delete one user's conversations, preferences and (unless --keep-account) the account itself."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--keep-account",
            action="store_true",
            help="Keep the account; delete its conversations and preferences.",
        )
        parser.add_argument(
            "--include-superuser", action="store_true", help="Allow deleting a superuser's data."
        )
        parser.add_argument("--yes", action="store_true", help="Delete without asking.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = user_named(options["username"])
        name = user.get_username()
        if user.is_superuser and not options["include_superuser"]:
            raise CommandError(f"{name} is a superuser; pass --include-superuser to delete their data too.")
        keep_account = options["keep_account"]
        found = retention.user_tally(user)
        what = f"{plural(found.conversations, 'conversation')} ({plural(found.messages, 'message')})"
        what += ", their preferences" + ("" if keep_account else " and the account itself")
        if not options["yes"]:
            stdin = options.get("stdin") or sys.stdin
            if not confirm(
                f"Delete {name}'s {what}? This cannot be undone.", stdin=stdin, stdout=self.stdout
            ):
                self.stdout.write("Nothing was deleted.")
                return
        erased = async_to_sync(retention.erase_user)(user, keep_account=keep_account)
        deleted = [f"{plural(erased.conversations, 'conversation')} ({plural(erased.messages, 'message')})"]
        if erased.preferences:
            deleted.append("their preferences")
        if erased.account:
            deleted.append("the account itself")
        listed = ", ".join(deleted[:-1]) + " and " + deleted[-1] if len(deleted) > 1 else deleted[0]
        self.stdout.write(f"Deleted {name}'s {listed}" + ("; the account is kept." if keep_account else "."))
