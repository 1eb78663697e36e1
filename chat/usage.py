"""Usage per user, model and day: written once at each reply's ending, read by the usage pages.

A row is added to, never rewritten per token: the ending's transaction increments one
``UsageDay`` (created on first use, with a retry when another worker created it first). Tokens
are what the server reported; when it reported none they are estimated (``chat.context``) and the
row counts the reply under ``estimated``, so the pages can say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from chat import context
from chat.models import Message, UsageDay

FIELDS = ("requests", "prompt_tokens", "completion_tokens", "estimated", "errors", "stops", "refused")


def today() -> date:
    """The usage day: the instance's ``TIME_ZONE`` day, the one the daily limits reset with."""
    return timezone.localdate()


def record_ending(*, reply: Message, owner_id: int, prompt_estimate: int | None = None) -> None:
    """Count a reply that ended (in its ending's transaction)."""
    estimated = reply.prompt_tokens is None or reply.completion_tokens is None
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else prompt_estimate or 0
    completion = reply.completion_tokens
    if completion is None:
        completion = context.estimate_tokens(reply.content) + context.estimate_tokens(reply.reasoning)
    status = reply.status
    _add(
        owner_id,
        reply.model,
        requests=1,
        prompt_tokens=prompt,
        completion_tokens=completion,
        estimated=int(estimated),
        errors=int(status in (Message.Status.ERROR, Message.Status.INTERRUPTED)),
        stops=int(status == Message.Status.STOPPED),
    )


def record_refusal(*, owner_id: int, model: str) -> None:
    """Count a message that a limit refused (no request went upstream)."""
    _add(owner_id, model, refused=1)


def _add(user_id: int, model: str, **increments: int) -> None:
    day = today()
    model = model[: UsageDay._meta.get_field("model").max_length] or "unknown"
    rows = UsageDay.objects.filter(user_id=user_id, day=day, model=model)
    if rows.update(**{name: F(name) + value for name, value in increments.items()}):
        return
    try:
        with transaction.atomic():
            UsageDay.objects.create(user_id=user_id, day=day, model=model, **increments)
    except IntegrityError:  # another worker created the row first: add to it
        rows.update(**{name: F(name) + value for name, value in increments.items()})


# --- What the pages show ------------------------------------------------------------


@dataclass
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: int = 0
    errors: int = 0
    stops: int = 0
    refused: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _totals(values: dict[str, Any]) -> Totals:
    return Totals(**{name: values.get(f"sum_{name}") or 0 for name in FIELDS})


def _sums() -> dict[str, Sum]:
    """Sums named apart from the fields they add up (an annotation may not take a field's name)."""
    return {f"sum_{name}": Sum(name) for name in FIELDS}


@dataclass
class UserUsage:
    """One user's usage over the last ``days`` days: per day and model, and in all."""

    days: int
    rows: list[UsageDay]
    total: Totals
    today: Totals


def user_usage(user_id: int, *, days: int = 30) -> UserUsage:
    first = today() - timedelta(days=days - 1)
    rows = list(UsageDay.objects.filter(user_id=user_id, day__gte=first).order_by("-day", "model"))
    total = Totals()
    day_total = Totals()
    for row in rows:
        for name in FIELDS:
            setattr(total, name, getattr(total, name) + getattr(row, name))
            if row.day == today():
                setattr(day_total, name, getattr(day_total, name) + getattr(row, name))
    return UserUsage(days=days, rows=rows, total=total, today=day_total)


@dataclass
class InstanceUsage:
    """Everyone's usage over the last ``days`` days: totals, top users and models, per day."""

    days: int
    first_day: date
    total: Totals
    top_users: list[dict[str, Any]]
    top_models: list[dict[str, Any]]
    per_day: list[tuple[date, Totals]]  # every day of the period, oldest first, zeros included


def instance_usage(*, days: int = 30, top: int = 10) -> InstanceUsage:
    first = today() - timedelta(days=days - 1)
    period = UsageDay.objects.filter(day__gte=first)
    total = _totals(period.aggregate(**_sums()))
    by_tokens = (F("sum_prompt_tokens") + F("sum_completion_tokens")).desc()
    top_users = [
        {"user_id": row["user_id"], "username": row["user__username"], "totals": _totals(row)}
        for row in period.values("user_id", "user__username")
        .annotate(**_sums())
        .order_by(by_tokens, "user__username")[:top]
    ]
    top_models = [
        {"model": row["model"], "totals": _totals(row)}
        for row in period.values("model").annotate(**_sums()).order_by(by_tokens, "model")[:top]
    ]
    found = {row["day"]: _totals(row) for row in period.values("day").annotate(**_sums())}
    period_days = [first + timedelta(days=n) for n in range(days)]
    per_day = [(day, found.get(day, Totals())) for day in period_days]
    return InstanceUsage(
        days=days, first_day=first, total=total, top_users=top_users, top_models=top_models, per_day=per_day
    )
