"""A page's filter: snapshot position first, then each event once, in order; a gap means resync."""

from __future__ import annotations

import pytest

from chat.subscription import FINISHED, Gap, Subscription


def delta(message_id: int, seq: int, text: str) -> dict:
    return {"kind": "delta", "message_id": message_id, "seq": seq, "frames": [text]}


def change(version: int, text: str) -> dict:
    return {"kind": "change", "version": version, "frames": [text]}


def ending(message_id: int, version: int) -> dict:
    return {"kind": "ending", "message_id": message_id, "version": version, "frames": [f"end {message_id}"]}


def synced(version: int = 3, seen: dict | None = None, stale: set | None = None) -> Subscription:
    subscription = Subscription()
    assert subscription.finish_sync(version=version, seen=seen or {}, stale=stale or set()) == []
    return subscription


def test_events_during_the_snapshot_are_held_then_filtered_against_it():
    subscription = Subscription()
    assert subscription.syncing
    for event in (delta(7, 4, "old"), delta(7, 5, "new"), change(3, "old change"), change(4, "new change")):
        assert subscription.accept(event) == []
    frames = subscription.finish_sync(version=3, seen={7: 4}, stale=set())
    assert frames == ["new", "new change"]
    assert not subscription.syncing


def test_deltas_apply_once_and_in_order():
    subscription = synced(seen={7: 2})
    assert subscription.accept(delta(7, 2, "dup")) == []
    assert subscription.accept(delta(7, 3, "c")) == ["c"]
    assert subscription.accept(delta(7, 3, "c again")) == []
    assert subscription.accept(delta(8, 1, "new reply")) == ["new reply"]


def test_a_missing_delta_is_a_gap():
    subscription = synced(seen={7: 2})
    with pytest.raises(Gap):
        subscription.accept(delta(7, 4, "skipped one"))


def test_a_missing_change_is_a_gap_and_old_changes_are_dropped():
    subscription = synced(version=3)
    assert subscription.accept(change(2, "old")) == []
    assert subscription.accept(change(4, "next")) == ["next"]
    with pytest.raises(Gap):
        subscription.accept(change(6, "after a lost one"))


def test_an_ending_closes_the_reply_to_late_deltas():
    subscription = synced(version=3, seen={7: 2})
    assert subscription.accept(ending(7, 4)) == ["end 7"]
    assert subscription.seen[7] == FINISHED
    assert subscription.accept(delta(7, 3, "late")) == []


def test_a_reply_shown_from_a_checkpoint_resyncs_when_it_moves():
    subscription = synced(version=3, stale={7})
    with pytest.raises(Gap):
        subscription.accept(delta(7, 9, "live after all"))
    subscription = synced(version=3, stale={7})
    with pytest.raises(Gap):
        subscription.accept(ending(7, 4))
