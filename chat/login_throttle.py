"""Sign-in throttling: tries counted per username and per address, for every worker.

After ``CHAT_LOGIN_FAILURES_PER_USERNAME`` failures for one username (existing or not, so names
cannot be probed faster), or ``CHAT_LOGIN_FAILURES_PER_ADDRESS`` from one address, within a window
of ``CHAT_LOGIN_LOCKOUT_SECONDS`` from the first of them, sign-in is refused until the window ends,
the right password included: a guesser learns nothing more from trying.

Each try is counted *before* its password is checked, in one atomic step that also checks the
limits (``attempt``), so a burst of simultaneous tries on several workers gets no more password
checks than the limit allows. A try that succeeds is taken back (``succeeded``): its username starts
again from none, and its address loses that one try (one account of one's own must not reset a
guessing run against others from the same address). A refused try is not counted.

The counts live in Redis when ``REDIS_URL`` is set (a key per username or address expiring with
its window), else in the database (``LoginFailures``). Usernames are counted by a hash of their
case-folded form: the store holds no names.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from chat import redis_client
from chat.models import LoginFailures

Scope = Literal["username", "address"]
REDIS_PREFIX = "chat:login:"


@dataclass(frozen=True)
class Lockout:
    """Sign-in refused for ``scope`` for another ``retry_after`` seconds."""

    scope: Scope
    retry_after: int

    @property
    def message(self) -> str:
        whom = "for this username" if self.scope == "username" else "from your network address"
        return f"Too many failed sign-ins {whom}. Try again in {_duration(self.retry_after)}."


def _duration(seconds: int) -> str:
    if seconds < 60:
        return "a minute" if seconds > 30 else f"{seconds} seconds"
    minutes = math.ceil(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _keys(username: str, address: str | None) -> list[tuple[Scope, str, int]]:
    """Each counter that applies, as (scope, key, limit); limits of 0 are not counted."""
    keys: list[tuple[Scope, str, int]] = []
    if settings.CHAT_LOGIN_FAILURES_PER_USERNAME > 0 and username:
        digest = hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
        keys.append(("username", f"user:{digest}", settings.CHAT_LOGIN_FAILURES_PER_USERNAME))
    if settings.CHAT_LOGIN_FAILURES_PER_ADDRESS > 0 and address:
        keys.append(("address", f"addr:{address[:64]}", settings.CHAT_LOGIN_FAILURES_PER_ADDRESS))
    return keys


def address_of(request: HttpRequest | None) -> str | None:
    return request.META.get("REMOTE_ADDR") or None if request is not None else None


# --- Counting ---------------------------------------------------------------------------------

# KEYS: the counters; ARGV: the window in seconds, then each counter's limit. Either every counter
# is below its limit and each counts one more try (a new one opens its window), or none is
# changed and the answer is each counter's remaining milliseconds (-1: not reached).
ATTEMPT_SCRIPT = """
local reached, waits = false, {}
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    reached = true
    waits[i] = redis.call('PTTL', key)
  else
    waits[i] = -1
  end
end
if reached then return waits end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return {}
"""
# KEYS: the username's counter, or none; then the address's, or none (ARGV[1] says which exist).
SUCCEEDED_SCRIPT = """
local i = 1
if ARGV[1] == '1' or ARGV[1] == '3' then redis.call('DEL', KEYS[i]); i = i + 1 end
if ARGV[1] == '2' or ARGV[1] == '3' then
  if redis.call('GET', KEYS[i]) then redis.call('DECR', KEYS[i]) end
end
return 0
"""


def attempt(username: str, address: str | None) -> Lockout | None:
    """Count one try for this username and address, or say which lockout refuses it (counting none)."""
    keys = _keys(username, address)
    if not keys:
        return None
    if redis_client.configured():
        window = settings.CHAT_LOGIN_LOCKOUT_SECONDS
        waits = redis_client.sync_client().eval(
            ATTEMPT_SCRIPT,
            len(keys),
            *(REDIS_PREFIX + key for _, key, _ in keys),
            window,
            *(limit for _, _, limit in keys),
        )
        remaining = [math.ceil(int(wait) / 1000) if int(wait) >= 0 else None for wait in waits]
    else:
        remaining = _attempt_in_database(keys)
    found = [
        Lockout(scope, max(1, seconds))
        for (scope, _, _), seconds in zip(keys, remaining, strict=False)
        if seconds is not None
    ]
    return max(found, key=lambda lock: lock.retry_after, default=None)


def _attempt_in_database(keys: list[tuple[Scope, str, int]]) -> list[int | None]:
    """``attempt`` in one transaction: the rows are locked, so workers take turns."""
    names = [key for _, key, _ in keys]
    for _ in range(3):  # again when another worker opened the same window meanwhile
        now = timezone.now()
        try:
            with transaction.atomic():
                LoginFailures.objects.filter(window_ends__lte=now).delete()  # ended windows, any key
                rows = {
                    row.key: row for row in LoginFailures.objects.select_for_update().filter(key__in=names)
                }
                remaining = [
                    math.ceil((rows[key].window_ends - now).total_seconds())
                    if key in rows and rows[key].failures >= limit
                    else None
                    for _, key, limit in keys
                ]
                if any(seconds is not None for seconds in remaining):
                    return remaining
                counted = [key for key in names if key in rows]
                LoginFailures.objects.filter(key__in=counted).update(failures=F("failures") + 1)
                ends = now + timedelta(seconds=settings.CHAT_LOGIN_LOCKOUT_SECONDS)
                LoginFailures.objects.bulk_create(
                    LoginFailures(key=key, failures=1, window_ends=ends) for key in names if key not in rows
                )
                return [None] * len(keys)
        except IntegrityError:
            continue
    raise RuntimeError("sign-in counts kept changing under this try")


def succeeded(username: str, address: str | None) -> None:
    """The try was right: its username starts again from none, and its address has one try fewer."""
    keys = _keys(username, address)
    if not keys:
        return
    scopes = {scope for scope, _, _ in keys}
    if redis_client.configured():
        which = ("username" in scopes) + 2 * ("address" in scopes)
        redis_client.sync_client().eval(
            SUCCEEDED_SCRIPT, len(keys), *(REDIS_PREFIX + key for _, key, _ in keys), which
        )
        return
    with transaction.atomic():
        for scope, key, _ in keys:
            rows = LoginFailures.objects.filter(key=key)
            if scope == "username":
                rows.delete()
            else:
                rows.filter(failures__gt=0).update(failures=F("failures") - 1)
