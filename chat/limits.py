"""Fair limits: whether one more reply may be written for a user now, decided across all workers.

A message is always stored; a limit only decides whether its reply goes upstream or is written at
once as an error that names the limit and when it resets (``Refusal``). ``admit`` runs inside the
transaction that stores the message, under a lock on the user's row, so two workers admitting
messages of one user take turns.

Each count is kept where it is exact:

- The message rates (per minute, per day) are counted in Redis when ``REDIS_URL`` is set: one
  script checks and records a message atomically (``RATE_SCRIPT``). The per-minute window slides
  (a log of the last minute's messages). Without Redis, or when it fails, they are counted from
  the replies stored.
- Replies streaming now and tokens used (``UsageDay``) are read from the database, which holds
  them exactly, whichever store counts the rates.

The global cap on upstream streams counts every streaming reply under a lock on the one
``SiteSettings`` row, taken only while the cap is set. Days are the instance's ``TIME_ZONE`` days.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.formats import date_format

from chat import redis_client, usage
from chat.models import Conversation, GroupLimits, Message, SiteSettings, UsageDay

logger = logging.getLogger(__name__)

MINUTE = 60.0


@dataclass(frozen=True)
class Limits:
    """One user's limits; 0 means none."""

    messages_per_minute: int = 0
    messages_per_day: int = 0
    concurrent_replies: int = 0
    tokens_per_day: int = 0
    tokens_per_month: int = 0

    @property
    def rates(self) -> bool:
        return bool(self.messages_per_minute or self.messages_per_day)

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


def defaults() -> Limits:
    return Limits(
        messages_per_minute=max(0, settings.CHAT_LIMIT_MESSAGES_PER_MINUTE),
        messages_per_day=max(0, settings.CHAT_LIMIT_MESSAGES_PER_DAY),
        concurrent_replies=max(0, settings.CHAT_LIMIT_CONCURRENT_REPLIES),
        tokens_per_day=max(0, settings.CHAT_LIMIT_TOKENS_PER_DAY),
        tokens_per_month=max(0, settings.CHAT_LIMIT_TOKENS_PER_MONTH),
    )


def limits_for(user_id: int) -> Limits:
    """The defaults, overridden by the user's groups: of several, the most generous (0 wins)."""
    base = defaults()
    overrides = list(GroupLimits.objects.filter(group__user__id=user_id))
    if not overrides:
        return base
    chosen: dict[str, int] = {}
    for f in fields(Limits):
        values = [getattr(o, f.name) for o in overrides if getattr(o, f.name) is not None]
        if not values:
            chosen[f.name] = getattr(base, f.name)
        else:
            chosen[f.name] = 0 if 0 in values else max(values)
    return Limits(**chosen)


@dataclass(frozen=True)
class Refusal:
    """Why a message gets no reply now: the limit (``Message.refused_by``) and what the reply says."""

    limit: str
    text: str
    resets_at: datetime | None = None


def _keys(user_id: int, day: date) -> tuple[str, str]:
    return f"chat:limits:{user_id}:minute", f"chat:limits:{user_id}:day:{day.isoformat()}"


# KEYS: the minute log (sorted set), the day counter. ARGV: now (ms), member, minute limit, day
# limit, day counter TTL (s). Returns {0} when recorded, {1, oldest ms} when the minute is full,
# {2, count} when the day is.
RATE_SCRIPT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
local per_minute = tonumber(ARGV[3])
if per_minute > 0 then
  if redis.call('ZCARD', KEYS[1]) >= per_minute then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, tonumber(oldest[2])}
  end
end
local per_day = tonumber(ARGV[4])
local today = tonumber(redis.call('GET', KEYS[2]) or '0')
if per_day > 0 and today >= per_day then
  return {2, today}
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], 61000)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
return {0}
"""


def admit(*, user_id: int) -> Refusal | None:
    """Whether one more reply may start for this user now: call inside the transaction storing it.

    Nothing is read when no limit applies. The Redis rates are checked last, so a message another
    limit refuses is never counted against them.
    """
    cap = settings.CHAT_MAX_UPSTREAM_STREAMS
    limits = limits_for(user_id)
    if cap <= 0 and not limits.any:
        return None
    if cap > 0 and (refusal := _instance_capacity(cap)) is not None:
        return refusal
    if not limits.any:
        return None
    held = _lock_and_count(user_id)
    refusal = _database_limits(limits, held)
    if refusal is not None or not limits.rates:
        return refusal
    counted = _redis_rates(user_id, limits)
    if counted is None:  # no Redis (or it failed): the database counts the rates
        return _database_rates(user_id, limits, held)
    return counted or None


@dataclass(frozen=True)
class _Held:
    """What the database holds of a user now: replies streaming, and today's and the month's use."""

    streaming: int
    tokens_today: int
    tokens_month: int
    requests_today: int


def _lock_and_count(user_id: int) -> _Held:
    """Lock the user's row, then read what the database holds of them.

    The lock makes one admission per user at a time on every worker, so the counts cannot race
    (PostgreSQL: ``FOR UPDATE``; SQLite's transactions take the database's write lock when they
    begin). On PostgreSQL the lock is a statement of its own: a statement reads the database as it
    was when the statement began, so counts read in the statement that waited for the lock would
    miss the reply the lock's holder just committed (two workers admitted two replies under a
    limit of one that way). The counts are then one statement with scalar subqueries instead of
    four queries: each is a round trip of about half a millisecond.
    """
    users, messages, conversations, usage_days = (
        connection.ops.quote_name(model._meta.db_table)
        for model in (get_user_model(), Message, Conversation, UsageDay)
    )
    today = usage.today()
    postgres = connection.vendor == "postgresql"
    month_start, day = (
        (today.replace(day=1), today) if postgres else (today.replace(day=1).isoformat(), today.isoformat())
    )
    sql = f"""
        SELECT
          (SELECT COUNT(*) FROM {messages} m JOIN {conversations} c ON c.id = m.conversation_id
            WHERE c.owner_id = u.id AND m.role = 'assistant' AND m.status = 'streaming'),
          (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM {usage_days}
            WHERE user_id = u.id AND day = %s),
          (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM {usage_days}
            WHERE user_id = u.id AND day >= %s),
          (SELECT COALESCE(SUM(requests), 0) FROM {usage_days} WHERE user_id = u.id AND day = %s)
        FROM {users} u WHERE u.id = %s
    """
    with connection.cursor() as cursor:
        if postgres:
            cursor.execute(f"SELECT 1 FROM {users} WHERE id = %s FOR UPDATE", [user_id])
        cursor.execute(sql, [day, month_start, day, user_id])
        row = cursor.fetchone()
    return _Held(*(int(value) for value in row)) if row else _Held(0, 0, 0, 0)


def _database_limits(limits: Limits, held: _Held) -> Refusal | None:
    """Replies streaming now and tokens used: what the database holds exactly."""
    if limits.concurrent_replies and held.streaming >= limits.concurrent_replies:
        return _concurrency_refusal(limits.concurrent_replies)
    today = usage.today()
    if limits.tokens_per_day and held.tokens_today >= limits.tokens_per_day:
        return _tokens_refusal("day", limits.tokens_per_day, held.tokens_today, _next_day(today))
    if limits.tokens_per_month and held.tokens_month >= limits.tokens_per_month:
        return _tokens_refusal("month", limits.tokens_per_month, held.tokens_month, _next_month(today))
    return None


def _redis_rates(user_id: int, limits: Limits) -> Refusal | Literal[False] | None:
    """Count the message in Redis: a refusal, False (counted, admitted) or None (not counted)."""
    if not redis_client.configured():
        return None
    minute_key, day_key = _keys(user_id, usage.today())
    try:
        answer = redis_client.sync_client().eval(
            RATE_SCRIPT,
            2,
            minute_key,
            day_key,
            int(time.time() * 1000),
            uuid.uuid4().hex,
            limits.messages_per_minute,
            limits.messages_per_day,
            2 * 24 * 3600,
        )
    except Exception:
        logger.warning("Message limits: Redis did not answer; counting in the database", exc_info=True)
        return None
    if answer[0] == 1:
        return _minute_refusal(limits.messages_per_minute, oldest=float(answer[1]) / 1000)
    if answer[0] == 2:
        return _day_refusal(limits.messages_per_day)
    return False


def _database_rates(user_id: int, limits: Limits, held: _Held) -> Refusal | None:
    """The message rates from the replies stored (refused ones are not counted)."""
    if limits.messages_per_minute:
        # The minute is full when it holds a limit-th newest reply; the window frees a place when
        # that one leaves it.
        since = timezone.now() - timedelta(seconds=MINUTE)
        nth = (
            _replies(user_id)
            .filter(created_at__gte=since, refused_by="")
            .order_by("-created_at")
            .values_list("created_at", flat=True)[limits.messages_per_minute - 1 : limits.messages_per_minute]
        )
        for leaves_at in nth:
            return _minute_refusal(limits.messages_per_minute, oldest=leaves_at.timestamp())
    # Ended replies are in the day's usage; the ones streaming now are not yet.
    if limits.messages_per_day and held.requests_today + held.streaming >= limits.messages_per_day:
        return _day_refusal(limits.messages_per_day)
    return None


def _replies(user_id: int) -> QuerySet[Message]:
    return Message.objects.filter(conversation__owner_id=user_id, role=Message.Role.ASSISTANT)


def _instance_capacity(cap: int) -> Refusal | None:
    SiteSettings.objects.get_or_create(pk=1)
    SiteSettings.objects.select_for_update().filter(pk=1).values_list("pk").first()
    streaming = Message.objects.filter(status=Message.Status.STREAMING, role=Message.Role.ASSISTANT).count()
    if streaming < cap:
        return None
    return Refusal(
        limit="upstream_streams",
        text=(
            f"The service is at capacity: {cap:,} replies are being written right now. Try again in a moment."
        ),
    )


# --- What a refusal says ----------------------------------------------------------------


def _when(moment: datetime) -> str:
    local = timezone.localtime(moment)
    if local.date() == timezone.localdate():
        return date_format(local, "H:i")
    return date_format(local, "D j M, H:i")


def _in(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = round(minutes / 60)
    return f"{hours} hour{'s' if hours != 1 else ''}"


def _minute_refusal(limit: int, *, oldest: float) -> Refusal:
    resets = datetime.fromtimestamp(oldest + MINUTE, tz=timezone.get_current_timezone())
    wait = oldest + MINUTE - time.time()
    return Refusal(
        limit="messages_per_minute",
        text=(
            f"Message limit reached: {limit:,} message{'s' if limit != 1 else ''} per minute. "
            f"You can send again in {_in(wait)} (at {_when(resets)})."
        ),
        resets_at=resets,
    )


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def _next_day(day: date) -> datetime:
    return _midnight(day + timedelta(days=1))


def _next_month(day: date) -> datetime:
    return _midnight((day.replace(day=1) + timedelta(days=32)).replace(day=1))


def _day_refusal(limit: int) -> Refusal:
    resets = _next_day(usage.today())
    return Refusal(
        limit="messages_per_day",
        text=(
            f"Daily message limit reached: {limit:,} message{'s' if limit != 1 else ''} per day. "
            f"It resets at midnight, in {_in((resets - timezone.now()).total_seconds())} "
            f"({_when(resets)})."
        ),
        resets_at=resets,
    )


def _concurrency_refusal(limit: int) -> Refusal:
    at_once = "one reply" if limit == 1 else f"{limit:,} replies"
    return Refusal(
        limit="concurrent_replies",
        text=(
            f"Too many replies at once: you can have {at_once} written at the same time. "
            "Send again when one has finished."
        ),
    )


def _tokens_refusal(period: str, limit: int, used: int, resets: datetime) -> Refusal:
    label = "Daily" if period == "day" else "Monthly"
    when = "at midnight" if period == "day" else "on the first of the month"
    return Refusal(
        limit=f"tokens_per_{period}",
        text=(
            f"{label} token budget used: {used:,} of {limit:,} tokens per {period}. "
            f"It resets {when}, in {_in((resets - timezone.now()).total_seconds())} ({_when(resets)})."
        ),
        resets_at=resets,
    )


def describe(limits: Limits) -> list[dict[str, Any]]:
    """The user's limits as the usage page lists them (only those set)."""
    labels = {
        "messages_per_minute": "Messages per minute",
        "messages_per_day": "Messages per day",
        "concurrent_replies": "Replies at the same time",
        "tokens_per_day": "Tokens per day",
        "tokens_per_month": "Tokens per month",
    }
    return [
        {"name": labels[f.name], "value": getattr(limits, f.name)}
        for f in fields(Limits)
        if getattr(limits, f.name)
    ]
