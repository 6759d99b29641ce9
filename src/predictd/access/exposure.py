"""Who may reach a server that runs without authentication (``PREDICTD_AUTH=off``).

Off opens predict and read to anyone who can connect, so it is for loopback only, unless the
operator says something in front of predictd authenticates (``PREDICTD_INSECURE_NO_AUTH``,
which `serve --insecure-no-auth` sets). Checked twice, so that every way of running the app
(`predictd serve`, `uvicorn --factory predictd.app:create_app_from_env`, granian) is covered:
by the app factory against ``PREDICTD_HOST``, and on every request against the address the
connection reached — a server picks its address (`--host`) without telling the app.
"""

from __future__ import annotations

import functools
import ipaddress

from predictd.settings import AccessSettings


class ExposedWithoutAuth(ValueError):
    """Settings that would open predict and read to anyone who can reach the server."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) or ``localhost``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def open_without_auth(settings: AccessSettings) -> bool:
    """Requests without a key are served only on loopback addresses."""
    return settings.auth == "off" and not settings.insecure_no_auth


def exposure_problem(
    settings: AccessSettings, host: str, allow: str = "set PREDICTD_INSECURE_NO_AUTH=true"
) -> str | None:
    """Why serving on ``host`` with these settings is refused, or None. ``allow``: how the
    reader says that something in front authenticates."""
    if not open_without_auth(settings) or is_loopback(host):
        return None
    return (
        f"refusing to serve {host} with PREDICTD_AUTH=off: anyone who can reach it could "
        f"predict and read. Turn auth on (and create keys), bind 127.0.0.1, or {allow} if "
        "something in front of predictd authenticates"
    )


@functools.lru_cache(maxsize=64)  # a host has few addresses; keyed on the server's own
def reached_remotely(host: str) -> bool:
    """Whether a connection that reached this server at ``host`` may come from elsewhere.
    Servers report the socket's IP address; a name (an in-process test transport's) or a
    Unix socket is local."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return not is_loopback(host)
