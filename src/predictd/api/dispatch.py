"""The ASGI layer between the serving middleware and FastAPI: answers the hot endpoints from
their fast table (api/endpoints.py) and holds the per-process concurrency cap.

It sits inside ``ServingMiddleware``, so a request reaches it with its id set and its body
read, checked and replayed. The concurrency slot is taken only then: on a hot endpoint once
the caller is also admitted, so refusals never wait for a slot, and a client that trickles or
stalls its body holds a connection, never a slot.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from predictd.api.concurrency import ConcurrencyGate
from predictd.api.deps import Services, context_of
from predictd.api.endpoints import Call, FastTable, Hot
from predictd.api.errors import as_error, send_error
from predictd.errors import Overloaded
from predictd.observability import Metrics

# Probes and the scrape must answer however busy the process is.
UNCAPPED = frozenset({"/health", "/ready", "/metrics"})


class Dispatcher:
    def __init__(
        self, app: ASGIApp, *, table: FastTable, metrics: Metrics, max_concurrency: int = 0
    ) -> None:
        self.app = app
        self.table = table
        self.metrics = metrics
        self.gate = ConcurrencyGate(max_concurrency) if max_concurrency > 0 else None

    @property
    def in_flight(self) -> int:
        return 0 if self.gate is None else self.gate.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self.table.match(scope["method"], scope["path"])
        if found is not None:
            await self._answer(found[0], found[1], scope, receive, send)
            return
        gate = None if scope["path"] in UNCAPPED else self.gate
        if gate is None:
            await self.app(scope, receive, send)
            return
        if not gate.enter():
            await send_error(Overloaded(gate.message), scope, receive, send, self.metrics)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave()

    async def _answer(
        self, hot: Hot, raw: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Admission, the slot, the path parameters, the handler: the order the declared
        route's dependencies run in."""
        scope["route"] = hot.route  # metrics label the request by the declared path
        if "fastapi.telemetry" in scope:  # PREDICTD_OPENTELEMETRY: the span too
            route_selected(scope, hot.route.path)
        services: Services = scope["app"].state.services
        request = Request(scope, receive)
        gate, entered = self.gate, False
        try:
            await hot.needs.admit(request, services)
            if gate is not None:
                entered = gate.enter()
                if not entered:
                    raise Overloaded(gate.message)
            params = hot.params.validate(raw)
            call = Call(request, services, context_of(request), await _body(receive), params)
            result = await hot.endpoint.handler(call)
        except Exception as exc:
            await send_error(as_error(exc), scope, receive, send, self.metrics)
            return
        finally:
            if entered and gate is not None:
                gate.leave()
        if isinstance(result, dict):
            await _send_json(send, result)
        else:
            await result(scope, receive, send)


async def _body(receive: Receive) -> bytes:
    """The body ServingMiddleware read and replays, without Request.body()'s stream
    machinery (measurable per request on this path)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, content: dict[str, Any]) -> None:
    """A 200 JSON answer, sent without building a Response: most answers are these."""
    payload = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def route_selected(scope: Scope, path: str) -> None:
    """Tell FastAPI's OpenTelemetry instrumentation which route answers: its router says so
    for the requests it routes, and the fast table answers without it. (FastAPI's own hook;
    tests/test_opentelemetry.py notices if it moves.)"""
    from fastapi.telemetry._api import _route_selected

    _route_selected(scope=scope, path=path)
