"""The uvicorn server with a drain period: on SIGTERM /ready turns 503 at once while requests
keep being answered for ``shutdown_delay_s`` (time for load balancers to notice), then uvicorn's
graceful shutdown finishes what is in flight. A second SIGTERM or SIGINT stops at once."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import uvicorn

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
