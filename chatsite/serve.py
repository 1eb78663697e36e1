"""``python -m chatsite.serve [Daphne's arguments]``: a Daphne worker on the loop ``CHAT_EVENT_LOOP`` names.

Daphne makes its event loop, and installs Twisted's reactor on it, as soon as ``daphne.server`` is
imported, before it loads the application: only what starts Daphne can choose the loop. This does,
then runs Daphne's own command line. uvloop is libuv under asyncio's API: the same code (httpx's
reads, the timers, the tasks) for about a tenth less CPU per streamed token in ``make bench``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

logger = logging.getLogger("chat.serve")


def use_event_loop(name: str) -> None:
    """Make the loops made from now on ``name``'s ("uvloop" or "asyncio")."""
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio"


def report_event_loop() -> None:
    """Log the loop this Daphne worker runs on; warn when it is not the one the settings name."""
    import daphne.server
    from django.conf import settings

    running = loop_name(daphne.server.twisted_loop)
    if running == settings.CHAT_EVENT_LOOP:
        logger.info("Event loop: %s", running)
    else:
        logger.warning(
            "Event loop: %s, though CHAT_EVENT_LOOP is %s: start workers with python -m chatsite.serve",
            running,
            settings.CHAT_EVENT_LOOP,
        )


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        name = settings.CHAT_EVENT_LOOP
        use_event_loop(name)
    except ImproperlyConfigured as exc:
        sys.exit(f"chatsite.serve: {exc}")
    except ImportError:
        sys.exit(
            "chatsite.serve: uvloop is not installed; install requirements.txt or set CHAT_EVENT_LOOP=asyncio"
        )
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
