"""gzip and deflate bodies: requests inflated within the body limit, responses compressed on
request (Open Inference Protocol clients use both)."""

from __future__ import annotations

import gzip
import zlib

ENCODINGS = ("gzip", "deflate")


class BodyTooLarge(Exception):
    """The inflated body would exceed the limit (a compression bomb stops here, not in RAM)."""


class BadEncoding(Exception):
    """A Content-Encoding predictd does not read, or bytes that do not inflate."""


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise BodyTooLarge
    if not inflater.eof or inflater.unused_data:
        raise BadEncoding("the compressed body is truncated or has trailing bytes")
    return out


def decode_body(encoding: str, body: bytes, limit: int) -> bytes:
    """The request body with its Content-Encoding undone, at most ``limit`` bytes."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    try:
        if name in ("gzip", "x-gzip"):
            return _inflate(body, 16 + zlib.MAX_WBITS, limit)
        if name == "deflate":
            # RFC 9110 says zlib-wrapped; some clients send raw deflate: accept both.
            wrapped = body[:1] == b"\x78"
            return _inflate(body, zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS, limit)
    except zlib.error as exc:
        raise BadEncoding(f"the body is not valid {name}: {exc}") from exc
    raise BadEncoding(f"Content-Encoding {encoding!r} is not supported; use gzip or deflate")


def preferred_encoding(accept_encoding: str | None) -> str | None:
    """gzip or deflate when the client accepts it (q=0 refuses), else None."""
    if not accept_encoding:
        return None
    accepted: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        key, _, value = params.strip().partition("=")
        if key.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        accepted[name.strip().lower()] = quality
    for name in ENCODINGS:
        if accepted.get(name, 0.0) > 0:
            return name
    return None


def encode_body(encoding: str, body: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=6, mtime=0)
    return zlib.compress(body, 6)
