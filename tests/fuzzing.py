"""What the property-based tests draw: text no database takes as it is, any JSON value, form bodies.

Also a loop that outlives Hypothesis's examples (so the worker's hub and pooled client do too) and
a catch of the log lines that would mean something broke.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Characters a database or an encoder refuses, and their neighbours, drawn often.
AWKWARD = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00", "\ufffd", "\r", "\u2028"]
awkward_chars = st.one_of(
    st.characters(),
    st.sampled_from(AWKWARD),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()),
)
# Any str Python can hold: NUL, lone surrogates and halves of pairs included.
any_text = st.text(awkward_chars, max_size=40)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)

# What a browser can put in a form field: any bytes, percent-encoded (Django decodes with replacement).
form_values = st.one_of(
    st.text(st.characters(), max_size=40), st.binary(max_size=40), st.sampled_from(AWKWARD[:1])
)


def form_body(fields: dict[str, str | bytes]) -> str:
    """URL-encoded, as a browser sends it; a lone surrogate goes as the bytes a careless encoder makes."""
    encoded = {
        key: value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        for key, value in fields.items()
    }
    return urlencode(encoded)


def fuzz(**overrides: object) -> settings:
    """Settings for examples that talk to real servers: no deadline, fixtures shared on purpose."""
    return settings(
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        **overrides,  # type: ignore[arg-type]
    )


class LoopRunner:
    """One event loop for every example of a test, as one worker process has one."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def run[T](self, job: Awaitable[T]) -> T:
        return self._runner.run(job)  # type: ignore[arg-type]

    def close(self) -> None:
        self._runner.close()


class BrokenThings(logging.Handler):
    """Collects log records that say something broke: errors, and anything with a traceback."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def describe(self) -> str:
        return "\n".join(f"{r.name}: {r.getMessage()}" for r in self.records)


@contextmanager
def broken_things() -> Iterator[BrokenThings]:
    handler = BrokenThings()
    loggers = [logging.getLogger(), logging.getLogger("chat")]  # (the app's logger does not propagate)
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
