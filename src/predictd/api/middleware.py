"""One pure-ASGI middleware for the per-request chores: request id, body limit, metrics.

Pure ASGI (not BaseHTTPMiddleware) because it runs on every prediction and must cost
microseconds. The body is read here, bounded by ``max_body_bytes`` on the bytes actually
received (Content-Length is not trusted alone) and by ``body_timeout_s`` on the time it takes
to arrive, then replayed to the app. Every answer leaves through here, which is where it gets
its ``x-request-id`` header and is counted; refusals are PredictdErrors, rendered like any.

The concurrency cap is inside, in api/dispatch.py, so it is taken only once the body is in: a
client that trickles or stalls its body holds a connection, never a slot.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uuid_utils import uuid4

from predictd.access import audit
from predictd.access.exposure import reached_remotely
from predictd.api.encoding import BadEncoding, BodyTooLarge, decode_body
from predictd.api.errors import send_error
from predictd.api.responses import is_v2
from predictd.errors import (
    BodyTimeout,
    InvalidJson,
    LoopbackOnly,
    PayloadTooLarge,
    PredictdError,
    UnsupportedEncoding,
    UnsupportedMediaType,
)
from predictd.observability import Metrics, request_id_var

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


MAX_JSON_DEPTH = 32  # no request body of ours nests deeper than a handful of levels
_STRUCTURE = bytes(range(256)).translate(None, b'[]{}"\\')  # every byte but these


def json_depth(body: bytes) -> int:
    """How deeply a JSON body nests, brackets inside strings not counted. Only bodies with
    more brackets than the limit are scanned, and only their brackets and quotes."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for byte in body.translate(None, _STRUCTURE):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            found: bytes = value
            return found
    return None


def _media_type(scope: Scope) -> bytes | None:
    value = _header(scope, b"content-type")
    return None if value is None else value.split(b";", 1)[0].strip().lower()


def _json_media(media: bytes | None) -> bool:
    return media is not None and (media == b"application/json" or media.endswith(b"+json"))


LOOPBACK_ONLY = (
    "this server runs without authentication (PREDICTD_AUTH=off) and answers only requests "
    "to a loopback address"
)


class ServingMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        body_timeout_s: float = 10.0,
        loopback_only: bool = False,
    ) -> None:
        """``loopback_only``: refuse requests that reached a non-loopback address of this
        host (auth off and not explicitly allowed): the server, not the app, chose the
        address, so only the connection can say where it came in."""
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self._request_id(scope)
        token = request_id_var.set(request_id)
        anonymous = audit.begin_request()  # who acts is decided per request, by the route
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            if self.loopback_only and _reached_remotely(scope):
                raise LoopbackOnly(LOOPBACK_ONLY)
            if scope["method"] in _BODY_METHODS:
                receive = _replay(await self._receive_body(scope, receive), receive)
        except PredictdError as exc:
            await send_error(exc, scope, receive, send_wrapper, self.metrics)
        else:
            await self.app(scope, receive, send_wrapper)
        finally:
            audit.end_request(anonymous)
            request_id_var.reset(token)
            self._observe(scope, status_holder[0], time.perf_counter() - started)

    async def _receive_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, decoded and checked, or the PredictdError that refuses it. It
        must arrive within ``body_timeout_s``: a client that stalls is answered 408 and costs
        nothing more."""
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await self._read_body(scope, receive)
        except TimeoutError:
            raise BodyTimeout(
                f"the request body did not arrive within {self.body_timeout_s:g} s",
                field="body",
            ) from None
        body = self._decode(scope, body)
        self._check_body(scope, body)
        return body

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate: str = value.decode("latin-1")
                if _REQUEST_ID.match(candidate):
                    return candidate
                break
        return uuid4().hex  # userspace RNG: no syscall, so no GIL hand-off to model threads

    def _decode(self, scope: Scope, body: bytes) -> bytes:
        """Undo a gzip/deflate Content-Encoding, bounded by the body limit; the app then sees
        a plain body."""
        encoding = _header(scope, b"content-encoding")
        if encoding is None:
            return body
        try:
            plain = decode_body(encoding.decode("latin-1"), body, self.max_body_bytes)
        except BodyTooLarge:
            raise self._too_large() from None
        except BadEncoding as exc:
            raise UnsupportedEncoding(str(exc), field="content-encoding") from None
        scope["headers"] = [
            (name, str(len(plain)).encode() if name == b"content-length" else value)
            for name, value in scope["headers"]
            if name != b"content-encoding"
        ]
        return plain

    @staticmethod
    def _check_body(scope: Scope, body: bytes) -> None:
        """Refuse a body the API will not parse: wrong media type, or JSON nested too deeply.
        V2 inference also takes the binary tensor extension, and its clients may send no
        Content-Type at all; the V2 codec checks those bodies itself."""
        if not body:
            return
        media = _media_type(scope)
        binary = media is None or media == b"application/octet-stream"
        if is_v2(scope["path"]) and (binary or _json_media(media)):
            return
        if not _json_media(media):
            raise UnsupportedMediaType(
                "send the body as JSON with 'Content-Type: application/json'",
                field="content-type",
            )
        if json_depth(body) > MAX_JSON_DEPTH:
            raise InvalidJson(
                f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", field="body"
            )

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body exceeds {self.max_body_bytes} bytes")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        raise self._too_large()
                except ValueError:
                    raise self._too_large() from None
                break
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _observe(self, scope: MutableMapping[str, Any], status: int, seconds: float) -> None:
        endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
        code = str(status)
        self.metrics.http_requests.labels(endpoint, scope["method"], code).inc()
        self.metrics.http_latency.labels(endpoint, code).observe(seconds)


def _reached_remotely(scope: Scope) -> bool:
    server = scope.get("server")
    return server is not None and reached_remotely(server[0])


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for disconnect like the server would

    return replay
