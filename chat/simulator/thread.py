"""Starting a simulator: on the running event loop, or on a thread of its own for sync callers."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from chat.simulator.plan import SimulatorConfig, _plan_for
from chat.simulator.server import Simulator
from chat.simulator.stats import SimulatorStats
from chat.simulator.wire import _HttpError


async def start_simulator(
    host: str = "127.0.0.1", port: int = 0, config: SimulatorConfig | None = None
) -> Simulator:
    """Start listening (``port=0`` picks a free port) on the running loop and return the simulator.

    Raises ``ValueError`` for an unknown ``config.fault`` and ``OSError`` when the port is taken.
    """
    config = config or SimulatorConfig()
    try:
        _plan_for(config, "", None)  # a bad server-wide fault fails here, not on every request
    except _HttpError as error:
        raise ValueError(error.message) from None
    simulator = Simulator(host, config)
    await simulator._start(port)
    return simulator


class SimulatorThread:
    """A simulator on its own event loop in a daemon thread, for sync callers (the demo mode, sync tests)."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._simulator: Simulator | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        if self._simulator is None:
            raise RuntimeError("The simulator thread has not been started.")
        return self._simulator.base_url

    @property
    def stats(self) -> SimulatorStats:
        if self._simulator is None:
            raise RuntimeError("The simulator thread has not been started.")
        return self._simulator.stats

    def start(self, timeout: float = 10.0) -> str:
        """Start the thread and return ``base_url`` once the socket is listening."""
        if self._thread is not None:
            return self.base_url
        self._thread = threading.Thread(target=self._run, name="chat-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("The simulator did not start in time.")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        self.port = self._simulator.port if self._simulator else self.port
        return self.base_url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            asyncio.set_event_loop(loop)
            try:
                self._simulator = loop.run_until_complete(start_simulator(self.host, self.port, self.config))
            except BaseException as exc:  # reported to start()'s caller
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the server and its connections, then join the thread."""
        thread, loop, simulator = self._thread, self._loop, self._simulator
        if thread is None or loop is None:
            return
        if simulator is not None and loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(simulator.close(), loop).result(timeout)
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
