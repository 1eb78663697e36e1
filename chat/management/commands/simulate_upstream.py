"""Run the OpenAI-compatible simulator as a standalone server, for benchmarks, scripts and manual testing.

It prints one line, ``Simulator listening on http://HOST:PORT/v1``, so callers using ``--port 0`` can
read the port, then serves until SIGINT or SIGTERM. It never touches the database.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.simulator import SimulatorConfig, start_simulator


class Command(BaseCommand):
    help = "Serve an OpenAI-compatible chat completions simulator (faults: see chat.simulator)."
    requires_system_checks: list[str] = []  # starts fast and works without a database

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8001, help="Port to bind; 0 picks a free one.")
        parser.add_argument(
            "--tokens-per-second",
            type=float,
            default=50.0,
            help="Streaming pace; 0 sends as fast as possible.",
        )
        parser.add_argument("--reply-tokens", type=int, default=40, help="Tokens per reply.")
        parser.add_argument(
            "--fault", default="", help='Default fault for every request, e.g. "split-bytes+crlf".'
        )
        parser.add_argument("--api-key", default="", help="Require this bearer key (default: no auth).")
        parser.add_argument(
            "--no-models", action="store_true", help="Answer 404 to GET /v1/models, to test fallbacks."
        )
        parser.add_argument(
            "--context-length",
            type=int,
            default=None,
            help="Report this context window (tokens) for every model on GET /v1/models, as "
            "context_length and max_model_len (default: none reported).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        if not 0 <= port <= 65535:
            raise CommandError("--port must be between 0 and 65535.")
        if options["context_length"] is not None and options["context_length"] <= 0:
            raise CommandError("--context-length must be a positive number of tokens.")
        config = SimulatorConfig(
            tokens_per_second=options["tokens_per_second"],
            reply_tokens=options["reply_tokens"],
            fault=options["fault"],
            api_key=options["api_key"],
            list_models=not options["no_models"],
            context_length=options["context_length"],
        )
        asyncio.run(self._serve(options["host"], port, config))

    async def _serve(self, host: str, port: int, config: SimulatorConfig) -> None:
        try:
            simulator = await start_simulator(host, port, config)
        except OSError as exc:
            raise CommandError(f"Could not listen on {host}:{port}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            self.stdout.write(f"Simulator listening on {simulator.base_url}")
            self.stdout.flush()
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await simulator.close()
