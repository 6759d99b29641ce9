"""The uvicorn server with a drain period: on SIGTERM /ready turns 503 at once while requests
keep being answered for ``shutdown_delay_s`` (time for load balancers to notice), then uvicorn's
graceful shutdown finishes what is in flight. A second SIGTERM or SIGINT stops at once. With
``--workers N`` every worker does the same when the supervisor passes SIGTERM on.

Its HTTP protocol bounds what uvicorn leaves open: the time a request's headers may take
(uvicorn waits for them without end: a client sending a byte a second holds its connection
for ever) and their size (httptools takes megabytes of headers).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from functools import partial
from types import FrameType
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import multiprocess

from predictd import health
from predictd.app import create_server_app
from predictd.observability import uvicorn_log_config
from predictd.settings import Settings

log = logging.getLogger("predictd.server")

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; browsers and proxies stay under 16 KiB


class ServerConfig(uvicorn.Config):
    """uvicorn's config carrying predictd's settings whole. It is what uvicorn pickles into
    each worker process, so every worker builds its app, its header deadline and its drain
    from the very settings the command built: nothing is copied into the environment and
    read back."""

    def __init__(self, settings: Settings, *, workers: int = 1) -> None:
        server = settings.server
        super().__init__(
            partial(create_server_app, settings),
            factory=True,
            http=BoundedHttpProtocol,
            host=server.host,
            port=server.port,
            workers=workers,
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=server.forwarded_allow_ips,
            timeout_keep_alive=5,  # an idle connection is closed after this (uvicorn's default)
            timeout_graceful_shutdown=30,
            log_level=server.log_level.lower(),
            log_config=uvicorn_log_config(server.log_level, server.log_format),
        )
        self.settings = settings
        self.header_timeout_s = server.header_timeout_s


class BoundedHttpProtocol(HttpToolsProtocol):
    """httptools' protocol with a deadline and a size limit on each request's head. The clock
    starts when the connection opens and again when an answer is complete; the head must be
    in before ``header_timeout_s``, or the connection is closed (408 if it had begun)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s: float = getattr(config, "header_timeout_s", 10.0)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The rest of a body answered early (413, 408) is not a head; the deadline bounds it.
        waiting = self._head_deadline is not None and (
            self.cycle is None or not self.cycle.more_body
        )
        super().data_received(data)
        if waiting and self._head_deadline is not None:  # still no complete head
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                too_big = f"the request line and headers exceed {MAX_HEAD_BYTES} bytes"
                self._refuse(431, "headers_too_large", too_big)

    def on_headers_complete(self) -> None:
        self._head_arrived()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # the next request's head is in already
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        self._head_arrived()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_late)

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        self._head_bytes = 0

    def _head_late(self) -> None:
        self._head_deadline = None
        if self._head_bytes == 0:  # idle: nothing to answer
            self.transport.close()
            return
        late = f"the request headers did not arrive within {self.header_timeout_s:g} s"
        self._refuse(408, "header_timeout", late)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer before any request exists, in predictd's error shape, and close."""
        self._head_arrived()
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": {"code": code, "message": message, "field": "headers"}})
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()


class DrainingServer(uvicorn.Server):
    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.shutdown_delay_s = config.settings.server.shutdown_delay_s
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
            assert isinstance(self.config, ServerConfig)
            self._server = DrainingServer(self.config)
        return self._server


def run_workers(config: ServerConfig) -> None:
    """uvicorn's supervisor (start, health-check and replace workers; SIGTERM to each on
    exit) with draining workers. uvicorn builds its worker servers itself and offers no hook
    for the server class, so its module's ``Process`` is pointed at ours for this run."""
    if not hasattr(multiprocess, "Process"):  # a uvicorn that moved it: serve, undrained
        log.warning("uvicorn's worker class not found; workers will not drain on SIGTERM")
    else:
        multiprocess.Process = DrainingProcess  # type: ignore[misc]
    multiprocess.Multiprocess(config, sockets=[config.bind_socket()]).run()
