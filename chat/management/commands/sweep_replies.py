"""End replies left "streaming" by workers that are gone, for hosts where no worker runs to do it.

Every worker sweeps at start and every ``CHAT_SWEEP_SECONDS``; with no worker running (a stopped
site, a maintenance window), a cron job or systemd timer runs this instead. It is the workers' own
sweep (``chat.turns.sweep``): each reply whose lease ran out is saved as interrupted with its last
checkpoint's text, and pages open on it are told through the channel layer.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand

from chat import turns
from chat.management.commands.purge_conversations import plural


class Command(BaseCommand):
    help = "End replies left streaming by a worker that is gone (lease run out), from their last checkpoint."

    def handle(self, *args: Any, **options: Any) -> None:
        ended = async_to_sync(turns.sweep)()
        self.stdout.write(
            f"Ended {plural(ended, 'reply', 'replies')} left streaming by a worker that is gone."
        )
