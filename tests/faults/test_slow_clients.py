"""Slow and stalled clients against a real server: they hold connections, never the
concurrency slots that admitted callers need; bodies and headers have deadlines (408), and
headers a size limit (431)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerPool, ServerProcess

SLOW_CLIENTS = 300
TOKEN = "slow-clients-admin"
ANSWER_WAIT_S = 30.0  # far beyond the 1 s deadlines configured below


def open_slow_body(server: ServerProcess, auth: str | None) -> socket.socket:
    """A POST /predict whose headers are in, announcing 1000 bytes of body and sending 9."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n" + (f"Authorization: {auth}\r\n" if auth else "") + "\r\n"
    )
    sock.sendall(head.encode() + b'{"text":"')
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Status and JSON body of the one answer on ``sock`` (the server closes or keeps it)."""
    sock.settimeout(ANSWER_WAIT_S)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), json.loads(body)


@contextlib.contextmanager
def trickling(socks: list[socket.socket], byte: bytes = b"a") -> Iterator[None]:
    """Send one byte to each socket every 0.2 s until the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.2):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(byte)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_slow_bodies_do_not_starve_admitted_clients(servers: ServerPool, tmp_path: Path) -> None:
    """300 connections whose bodies stall or trickle (no key, a wrong key, a valid key) stay
    open while an authenticated client's 100 /predict calls all get 200 from a server that
    works on at most 32 requests at once."""
    server = servers.start(f"sqlite:///{tmp_path / 'p.db'}", spool_dir=tmp_path / "spool",
                           env={"PREDICTD_AUTH": "on", "PREDICTD_ADMIN_TOKEN": TOKEN,
                                "PREDICTD_MAX_CONCURRENCY": "32",
                                "PREDICTD_BODY_TIMEOUT_S": "300"})  # fmt: skip
    auths = [None, "Bearer wrong", f"Bearer {TOKEN}"]
    slow = [open_slow_body(server, auths[n % 3]) for n in range(SLOW_CLIENTS)]
    try:
        with server.client() as client:
            # Every slow request's headers are in and its app call has begun by the time one
            # sent after them all is answered (one event loop, connections served in order).
            assert client.get("/health").status_code == 200
            headers = {"authorization": f"Bearer {TOKEN}"}
            with trickling(slow[::2]):
                codes = [
                    client.post("/predict", json={"text": f"call {n}"}, headers=headers)
                    for n in range(100)
                ]
        assert [r.status_code for r in codes] == [200] * 100, {r.text for r in codes}
        for sock in slow:  # still open and unanswered: they were held all along
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in slow:
            sock.close()


def test_a_stalled_or_trickled_body_gets_408(servers: ServerPool, tmp_path: Path) -> None:
    server = servers.start(f"sqlite:///{tmp_path / 'p.db'}", spool_dir=tmp_path / "spool",
                           env={"PREDICTD_BODY_TIMEOUT_S": "1"})  # fmt: skip
    stalled = open_slow_body(server, None)
    trickled = open_slow_body(server, None)
    try:
        with trickling([trickled]):  # 5 bytes a second: 1000 would take 200 s
            answers = [read_answer(stalled), read_answer(trickled)]
    finally:
        stalled.close()
        trickled.close()
    for status, body in answers:
        assert status == 408, body
        error = body["error"]
        assert isinstance(error, dict)
        assert (error["code"], error["field"]) == ("body_timeout", "body"), body
    assert server.metric("predictd_rejected_requests_total", {"code": "body_timeout"}) == 2
    with server.client() as client:
        assert client.post("/predict", json={"text": "still here"}).status_code == 200


def test_headers_have_a_deadline_and_a_size_limit(servers: ServerPool, tmp_path: Path) -> None:
    server = servers.start(f"sqlite:///{tmp_path / 'p.db'}", spool_dir=tmp_path / "spool",
                           env={"PREDICTD_HEADER_TIMEOUT_S": "1"})  # fmt: skip
    address = ("127.0.0.1", server.port)
    with socket.create_connection(address) as idle, socket.create_connection(address) as trickled:
        trickled.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        with trickling([trickled], b"X"):  # one header, a byte every 0.2 s, never finished
            status, body = read_answer(trickled)
        assert status == 408, body
        late = "the request headers did not arrive within 1 s"
        assert body["error"] == {"code": "header_timeout", "field": "headers", "message": late}
        idle.settimeout(ANSWER_WAIT_S)
        assert idle.recv(1) == b""  # a connection that never sends is closed, unanswered
    with socket.create_connection(address) as huge:  # sent at once, without an end
        huge.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 70_000)
        status, body = read_answer(huge)
        assert status == 431, body
    with server.client() as client:  # ordinary requests on kept-alive connections still work
        for _ in range(3):
            assert client.get("/health").status_code == 200
