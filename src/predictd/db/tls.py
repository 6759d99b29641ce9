"""TLS to PostgreSQL from libpq's URL parameters.

Managed PostgreSQL services hand out `postgresql://…?sslmode=require` URLs in libpq's
dialect. SQLAlchemy passes URL query parameters to asyncpg as keyword arguments, and asyncpg
takes TLS as one `ssl` argument, so ``sslmode``, ``sslrootcert``, ``sslcert`` and ``sslkey``
are taken out of the URL here and turned into that argument, with libpq's (16) meaning:

- A parameter missing from the URL comes from libpq's variable (``PGSSLMODE``,
  ``PGSSLROOTCERT``, ``PGSSLCERT``, ``PGSSLKEY``), then libpq's default: ``sslmode`` is
  ``prefer``, or ``verify-full`` with ``sslrootcert=system``; the files are
  ``~/.postgresql/root.crt``, ``postgresql.crt`` and ``postgresql.key`` when they exist.
- ``disable``: no TLS. ``allow``/``prefer``: TLS if the server offers it, not verified
  (asyncpg's own fallback, which also sends the default client certificate). asyncpg cannot
  fall back to plaintext with a TLS context of ours, so these refuse a URL that names
  ``sslrootcert``/``sslcert``/``sslkey`` rather than connect without them.
- ``require``: TLS, not verified — unless there is a root file (given or the default), which
  makes it ``verify-ca`` (libpq does the same).
- ``verify-ca``: the server certificate must chain to the root file; ``verify-full``: and
  name the host connected to.
- ``sslrootcert=system``: the system's trusted CAs; only with ``verify-full``, as in libpq
  16: anyone can get a publicly trusted certificate for a host name of their own.

Errors name modes, variables and file paths, never the URL (it may hold a password).
`pg_dump` (``db backup``) is given the URL as written: libpq reads these itself.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy.engine import URL

from predictd.errors import PredictdError
from predictd.settings import SSL_FILE_PARAMS, SSL_MODES

TlsArgument = ssl.SSLContext | str | bool

# libpq's environment variable for each URL parameter.
ENV_NAMES = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
}
# libpq's default file for each, in ~/.postgresql/, used when it exists.
DEFAULT_FILES = {"sslrootcert": "root.crt", "sslcert": "postgresql.crt", "sslkey": "postgresql.key"}


class _Param:
    """One parameter's value and where it came from, for error messages."""

    def __init__(self, name: str, value: str, source: str) -> None:
        self.name, self.value, self.source = name, value, source

    def __str__(self) -> str:
        origin = f" (from {self.source})" if self.source != "url" else ""
        return f"{self.name}={self.value}{origin}"


def split_tls(url: URL, environ: Mapping[str, str] | None = None) -> tuple[URL, TlsArgument | None]:
    """The URL without libpq's TLS parameters, and asyncpg's `ssl` argument for them (None
    when neither the URL nor libpq's variables set any: asyncpg's default, libpq's
    `prefer`)."""
    env = os.environ if environ is None else environ
    names = ("sslmode", *SSL_FILE_PARAMS)
    given: dict[str, _Param] = {}
    for name in names:
        if name in url.query:
            value = url.query[name]
            if not isinstance(value, str):
                raise PredictdError(f"DATABASE_URL: {name} is given more than once")
            given[name] = _Param(name, value, "url")
        elif env.get(ENV_NAMES[name]):
            given[name] = _Param(name, env[ENV_NAMES[name]], ENV_NAMES[name])
    rest = url.set(query={k: v for k, v in url.query.items() if k not in names})
    if not given:
        return rest, None
    return rest, _ssl_argument(given, _home(env))


def _home(env: Mapping[str, str]) -> Path | None:
    """libpq's home directory: $HOME, else the account's."""
    if env.get("HOME"):
        return Path(env["HOME"])
    try:
        return Path.home()
    except (RuntimeError, KeyError):
        return None


def _ssl_argument(given: dict[str, _Param], home: Path | None) -> TlsArgument:
    root = given.get("sslrootcert")
    system = root is not None and root.value == "system"
    if "sslmode" in given:
        mode_param = given["sslmode"]
    else:
        mode_param = _Param("sslmode", "verify-full" if system else "prefer", "default")
    mode = mode_param.value
    if mode not in SSL_MODES:
        where = "DATABASE_URL: sslmode" if mode_param.source == "url" else mode_param.source
        raise PredictdError(f"{where} must be one of {', '.join(SSL_MODES)}, not {mode!r}")
    if system and mode != "verify-full":
        raise PredictdError(
            f"DATABASE_URL: {mode_param} cannot be used with {root}: any public CA signs "
            "certificates for anyone's host names, so only the host name check protects "
            "you; use sslmode=verify-full (the default with sslrootcert=system, as in libpq 16)"
        )
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        for name in SSL_FILE_PARAMS:
            param = given.get(name)
            if param is not None and param.source == "url":
                raise PredictdError(
                    f"DATABASE_URL: sslmode={mode} cannot use {name}: asyncpg takes it only "
                    f"in a TLS context, which rules out {mode}'s plaintext fallback; use "
                    "sslmode=require (or verify-ca/verify-full)"
                )
        # asyncpg's own `allow`/`prefer`: no verification, and the client certificate from
        # PGSSLCERT/PGSSLKEY or ~/.postgresql, as libpq would send.
        return mode
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = mode == "verify-full"
    if system:
        context.load_default_certs()
    else:
        root_file = root.value if root is not None else _default_file(home, "sslrootcert")
        if root_file is not None:
            _load(lambda: context.load_verify_locations(root_file), root_file)
        elif mode == "require":
            context.verify_mode = ssl.CERT_NONE
        else:
            missing = home / ".postgresql" / "root.crt" if home else "~/.postgresql/root.crt"
            raise PredictdError(
                f"DATABASE_URL: sslmode={mode} needs the server's CA: add sslrootcert=<file> "
                f"to the URL (or sslrootcert=system for the system's CAs, with verify-full); "
                f"{missing} does not exist"
            )
    cert = given["sslcert"].value if "sslcert" in given else _default_file(home, "sslcert")
    key = given["sslkey"].value if "sslkey" in given else None
    if cert is not None:
        if key is None:
            key = _default_file(home, "sslkey")
        # No password prompt on the terminal for an encrypted key: it fails instead.
        _load(lambda: context.load_cert_chain(cert, keyfile=key, password=""),
              cert if key is None else f"{cert} (key {key})")  # fmt: skip
    elif key is not None:
        raise PredictdError(
            f"DATABASE_URL: sslkey needs sslcert (the certificate {given['sslkey']} belongs to)"
        )
    return context


def _default_file(home: Path | None, name: str) -> str | None:
    """libpq's default file for ``name`` in ~/.postgresql, if it exists."""
    if home is None:
        return None
    path = home / ".postgresql" / DEFAULT_FILES[name]
    return str(path) if path.is_file() else None


def _load(loader: Callable[[], object], path: str) -> None:
    """Run ``loader()``; a missing or bad file ``path`` is a one-line configuration error."""
    try:
        loader()
    except (OSError, ssl.SSLError) as exc:
        raise PredictdError(f"DATABASE_URL: cannot use TLS file {path}: {exc}") from None
