"""A small TCP proxy in front of the real PostgreSQL, to cut and restore the database link.

Threads, blocking sockets: one accept thread, two pump threads per proxied connection.
``cut()`` shuts every live connection down at once and resets new ones on arrival, as a
database that vanished would; ``restore()`` lets connections through again. ``delay_s`` holds
each chunk of the database's answers that long, as a slow or distant database would.
Everything is bounded: sockets are closed by the threads that use them, and ``close()`` joins
them all.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Sequence
from types import TracebackType

_ACCEPT_POLL_S = 0.05
_UPSTREAM_CONNECT_S = 2.0
_JOIN_S = 5.0
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def _reset(sock: socket.socket) -> None:
    """Close abruptly (RST), the way a dead peer's host answers."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class _Link:
    """One client connection and its upstream twin; closed when both pumps have ended."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._pumps_left = 2

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(
                target=self._pump, args=(src, dst, n == 1), name=f"proxy-pump-{n}", daemon=True
            )
            for n, (src, dst) in enumerate(
                ((self.client, self.upstream), (self.upstream, self.client))
            )
        ]
        for thread in threads:
            thread.start()
        return threads

    def shutdown(self) -> None:
        """Wake both pumps (a blocked recv returns b"") and tell both peers we are gone."""
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if answers and self.proxy.delay_s > 0:
                    time.sleep(self.proxy.delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self.shutdown()
            with self._lock:
                self._pumps_left -= 1
                last = self._pumps_left == 0
            if last:
                self.client.close()
                self.upstream.close()
                self.proxy._forget(self)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; ``cut()`` / ``restore()`` the link.

    ``balance``: ports of several upstreams on 127.0.0.1 instead, taken in turn for each new
    connection (a round-robin load balancer); one that refuses is skipped for the next, as a
    balancer's passive health check would. ``set_upstreams()`` replaces them."""

    def __init__(
        self,
        upstream_host: str = "127.0.0.1",
        upstream_port: int = 5432,
        *,
        balance: Sequence[int] = (),
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._upstreams = [(upstream_host, p) for p in balance] or [self.upstream]
        self._turn = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_ACCEPT_POLL_S)
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._cut = False
        self.delay_s = 0.0  # held before each chunk the database sends back
        self._closed = threading.Event()
        self.accepted = 0
        self.refused = 0
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="proxy-accept", daemon=True
        )
        self._acceptor.start()

    # -- control -------------------------------------------------------------------------

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._links)

    def cut(self) -> None:
        """Drop every live connection now; new ones are reset until ``restore()``."""
        with self._lock:
            self._cut = True
            links = list(self._links)
        for link in links:
            link.shutdown()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        """Stop accepting, drop everything, and join every thread (bounded)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.cut()
        self._acceptor.join(_JOIN_S)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(_JOIN_S)
        stuck = [t.name for t in [self._acceptor, *threads] if t.is_alive()]
        if stuck:
            raise RuntimeError(f"proxy threads did not stop: {stuck}")

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def set_upstreams(self, ports: Sequence[int]) -> None:
        with self._lock:
            self._upstreams = [("127.0.0.1", p) for p in ports]

    def _connect_upstream(self) -> socket.socket:
        with self._lock:
            order = list(self._upstreams)
            self._turn += 1
            start = self._turn
        last: OSError | None = None
        for i in range(len(order)):
            try:
                return socket.create_connection(
                    order[(start + i) % len(order)], timeout=_UPSTREAM_CONNECT_S
                )
            except OSError as exc:
                last = exc
        assert last is not None
        raise last

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    # -- internals -----------------------------------------------------------------------

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept_loop(self) -> None:
        try:
            while not self._closed.is_set():
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._closed.is_set():
                        return
                    raise
                self._handle(client)
        finally:
            self._listener.close()

    def _handle(self, client: socket.socket) -> None:
        client.settimeout(None)
        if self._cut or self._closed.is_set():
            self.refused += 1
            _reset(client)
            return
        try:
            upstream = self._connect_upstream()
        except OSError:
            self.refused += 1
            _reset(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(self, client, upstream)
        with self._lock:
            if self._cut:  # cut while we were connecting upstream
                self.refused += 1
                _reset(client)
                upstream.close()
                return
            self._links.add(link)
            self.accepted += 1
            # Keep only live threads, so a long test does not grow the list without bound.
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.extend(link.start())
