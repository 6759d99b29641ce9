"""A real HTTP endpoint on 127.0.0.1 that records what is POSTed to it, failing the first
``failures`` requests with 503 so that senders must retry."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookSink:
    def __init__(self, failures: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures_left = failures
        self.lock = threading.Lock()
        self.url = ""

    def events(self) -> list[str]:
        with self.lock:
            return [body["event"] for body in self.received]


@contextmanager
def webhook_sink(failures: int = 0) -> Iterator[WebhookSink]:
    sink = WebhookSink(failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            with sink.lock:
                failing = sink.failures_left > 0
                if failing:
                    sink.failures_left -= 1
                else:
                    sink.received.append(body)
            self.send_response(503 if failing else 200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
