"""What one page has been shown, so every frame reaches it once and in order.

Events published for a conversation are of three kinds:

- ``delta``: text appended to a streaming reply, numbered per reply (``seq`` 1, 2, ...);
- ``change``: messages added or a branch switched, numbered per conversation (``version``);
- ``ending``: a reply ended (also a ``version`` step), sent after its last delta;
- ``meta`` and ``deleted``: the title changed, the conversation is gone. Unnumbered: each frame
  states the whole of what it shows, so it applies in any order.

A page starts from a snapshot (the conversation at some version, and the text of each streaming
reply up to some ``seq``), and then applies only later events. Events that arrive while the
snapshot is being taken are held and replayed through the same filter. A gap (a lost event) means
the page can no longer be trusted to be right, so it is told to reconnect and take a new snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]

FINISHED = 1 << 62  # the seq of a reply the page shows as ended: drop anything still in flight


UNNUMBERED = frozenset({"meta", "deleted", "account_closed"})


class Gap(Exception):
    """An event is missing: the page must resync."""


@dataclass
class Subscription:
    version: int = -1
    seen: dict[int, int] = field(default_factory=dict)  # reply id -> last seq shown
    stale: set[int] = field(default_factory=set)  # replies shown from a checkpoint, not live
    _held: list[Event] | None = field(default_factory=list)  # events held while syncing

    @property
    def syncing(self) -> bool:
        return self._held is not None

    def begin_sync(self) -> None:
        self._held = []

    def finish_sync(self, *, version: int, seen: dict[int, int], stale: set[int]) -> list[str]:
        """Take the snapshot's position; return the frames of the held events that are newer."""
        self.version = version
        self.seen.update(seen)
        self.stale |= stale
        held, self._held = self._held or [], None
        frames: list[str] = []
        for event in held:
            frames.extend(self.accept(event))
        return frames

    def accept(self, event: Event) -> list[str]:
        """The frames of ``event`` to send now (none if already shown); ``Gap`` if it cannot apply."""
        if self._held is not None:
            self._held.append(event)
            return []
        kind = event["kind"]
        if kind in UNNUMBERED:
            return event["frames"]
        if kind == "delta":
            return self._delta(event)
        if event["version"] <= self.version:
            return []
        if event["version"] != self.version + 1:
            raise Gap(f"version {event['version']} after {self.version}")
        self.version = event["version"]
        if kind == "ending":
            message_id = event["message_id"]
            if message_id in self.stale or event.get("redraw"):
                raise Gap(f"reply {message_id} ended with text the page may not show")
            self.seen[message_id] = FINISHED
        return event["frames"]

    def _delta(self, event: Event) -> list[str]:
        message_id, seq = event["message_id"], event["seq"]
        if message_id in self.stale:
            raise Gap(f"reply {message_id} is live again")
        last = self.seen.get(message_id, 0)
        if seq <= last:
            return []
        if seq != last + 1:
            raise Gap(f"reply {message_id}: seq {seq} after {last}")
        self.seen[message_id] = seq
        return event["frames"]
