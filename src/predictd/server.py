"""The uvicorn server with a drain period: on SIGTERM /ready turns 503 at once while requests
keep being answered for ``shutdown_delay_s`` (time for load balancers to notice), then uvicorn's
graceful shutdown finishes what is in flight. A second SIGTERM or SIGINT stops at once. With
``--workers N`` every worker does the same when the supervisor passes SIGTERM on."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import uvicorn
from uvicorn.supervisors import multiprocess

from predictd import health

log = logging.getLogger("predictd.server")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, shutdown_delay_s: float) -> None:
        super().__init__(config)
        self.shutdown_delay_s = shutdown_delay_s
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._timer is not None or self.shutdown_delay_s <= 0 or sig != signal.SIGTERM:
            if self._timer is not None:
                self._timer.cancel()
            health.begin_draining()
            super().handle_exit(sig, frame)
            return
        health.begin_draining()
        log.info("draining before shutdown", extra={"seconds": self.shutdown_delay_s})
        # handle_exit only sets flags the server's main loop polls, so a timer thread may.
        self._timer = threading.Timer(self.shutdown_delay_s, super().handle_exit, (sig, frame))
        self._timer.daemon = True
        self._timer.start()


class DrainingProcess(multiprocess.Process):
    """A worker of ``serve --workers N``: its server drains like the single-process one."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            from predictd.settings import Settings  # in the worker, from the same environment

            self._server = DrainingServer(self.config, Settings().shutdown_delay_s)
        return self._server


def run_workers(config: uvicorn.Config) -> None:
    """uvicorn's supervisor (start, health-check and replace workers; SIGTERM to each on
    exit) with draining workers. uvicorn builds its worker servers itself and offers no hook
    for the server class, so its module's ``Process`` is pointed at ours for this run."""
    if not hasattr(multiprocess, "Process"):  # a uvicorn that moved it: serve, undrained
        log.warning("uvicorn's worker class not found; workers will not drain on SIGTERM")
    else:
        multiprocess.Process = DrainingProcess  # type: ignore[misc]
    multiprocess.Multiprocess(config, sockets=[config.bind_socket()]).run()
