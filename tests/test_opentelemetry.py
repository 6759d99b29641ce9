"""PREDICTD_OPENTELEMETRY=true exports traces and metrics over OTLP/HTTP, configured by the
standard OTEL_* variables: a real server process sends them to a receiver on 127.0.0.1 that
decodes the protobuf it gets, as an OpenTelemetry Collector would."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.server import ServerPool, wait_for

pytestmark = pytest.mark.slow


class Receiver:
    """What arrived, decoded: span names with their attributes, metric names, resources."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[str, dict[str, Any]]] = []
        self.metrics: set[str] = set()
        self.services: set[str] = set()
        self.url = ""

    def take(self, path: str, body: bytes) -> None:
        with self.lock:
            if path == "/v1/traces":
                traces = ExportTraceServiceRequest.FromString(body)
                for resource in traces.resource_spans:
                    self.services |= _service(resource.resource)
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            attributes = {a.key: _value(a.value) for a in span.attributes}
                            self.spans.append((span.name, attributes))
            elif path == "/v1/metrics":
                sent = ExportMetricsServiceRequest.FromString(body)
                for resource in sent.resource_metrics:
                    self.services |= _service(resource.resource)
                    for scope in resource.scope_metrics:
                        self.metrics |= {m.name for m in scope.metrics}


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def _service(resource: Any) -> set[str]:
    return {str(_value(a.value)) for a in resource.attributes if a.key == "service.name"}


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.take(self.path, body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def test_traces_and_metrics_reach_an_otlp_receiver(servers: ServerPool, tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        server = servers.start(
            f"sqlite:///{tmp_path / 'otel.db'}",
            spool_dir=tmp_path / "spool",
            env={
                "PREDICTD_OPENTELEMETRY": "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_SERVICE_NAME": "predictd-test",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
            },
        )
        with server.client() as client:
            for _ in range(3):
                answer = client.post("/predict", json={"text": "a fine day"})
                assert answer.status_code == 200, answer.text
            assert client.get("/models/nope/versions").status_code == 404

        def arrived() -> bool:
            with receiver.lock:
                routes = {attributes.get("http.route") for _, attributes in receiver.spans}
                return "/predict" in routes and bool(receiver.metrics)

        wait_for(arrived, 20, "spans and metrics at the OTLP receiver")
        assert server.terminate() == 0

    with receiver.lock:
        # /predict is answered by the fast table, not the router: it is named all the same
        predicts = [a for name, a in receiver.spans if name == "POST /predict"]
        assert len(predicts) == 3
        assert all(a.get("http.route") == "/predict" for a in predicts)
        assert all(a.get("http.request.method") == "POST" for a in predicts)
        assert {a.get("http.response.status_code") for a in predicts} == {200}
        assert receiver.services == {"predictd-test"}
        assert "http.server.request.duration" in receiver.metrics, receiver.metrics
