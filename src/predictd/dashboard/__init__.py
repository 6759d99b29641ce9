"""The dashboard: one static page (HTML, CSS, vanilla JavaScript) that draws what the JSON API
returns. It has no queries of its own, so every figure on it is one a client can fetch."""

from __future__ import annotations

from functools import cache
from importlib import resources

MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}

# Nothing but this server: no CDN, no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@cache
def asset(name: str) -> bytes:
    """One of the page's files, read from the installed package once."""
    if name not in MEDIA_TYPES:
        raise KeyError(name)
    return resources.files(__package__).joinpath("static", name).read_bytes()
