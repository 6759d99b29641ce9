"""TLS to PostgreSQL from libpq's URL parameters.

Managed PostgreSQL services hand out `postgresql://…?sslmode=require` URLs in libpq's
dialect. SQLAlchemy passes URL query parameters to asyncpg as keyword arguments, and asyncpg
takes TLS as one `ssl` argument, so ``sslmode``, ``sslrootcert``, ``sslcert`` and ``sslkey``
are taken out of the URL here and turned into that argument, with libpq's meaning:

- ``disable``: no TLS. ``allow``/``prefer``: TLS if the server offers it, no verification
  (asyncpg's own fallback; ``prefer`` is also what no ``sslmode`` means).
- ``require``: TLS, server certificate not verified — unless ``sslrootcert`` is given, which
  makes it ``verify-ca`` (libpq does the same).
- ``verify-ca``: the server certificate must chain to ``sslrootcert``;
  ``verify-full``: and name the host connected to.
- ``sslrootcert``: a CA file, default ``~/.postgresql/root.crt`` as in libpq, or ``system``
  for the system's trusted CAs. ``sslcert``/``sslkey``: a client certificate and its key.

`pg_dump` (``db backup``) is given the URL as written: libpq reads these itself.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import URL

from predictd.errors import PredictdError
from predictd.settings import SSL_FILE_PARAMS, SSL_MODES

TlsArgument = ssl.SSLContext | str | bool


def split_tls(url: URL) -> tuple[URL, TlsArgument | None]:
    """The URL without libpq's TLS parameters, and asyncpg's `ssl` argument for them (None
    when the URL has none: asyncpg's default, which is libpq's `prefer`)."""
    names = ("sslmode", *SSL_FILE_PARAMS)
    given = {name: url.query[name] for name in names if name in url.query}
    if not given:
        return url, None
    values: dict[str, str] = {}
    for name, value in given.items():
        if not isinstance(value, str):
            raise PredictdError(f"DATABASE_URL: {name} is given more than once")
        values[name] = value
    rest = {k: v for k, v in url.query.items() if k not in names}
    return url.set(query=rest), ssl_argument(
        values.get("sslmode", "prefer"),
        rootcert=values.get("sslrootcert"),
        cert=values.get("sslcert"),
        key=values.get("sslkey"),
    )


def ssl_argument(
    mode: str, *, rootcert: str | None = None, cert: str | None = None, key: str | None = None
) -> TlsArgument:
    """asyncpg's `ssl` connect argument for one libpq `sslmode` and its files."""
    if mode not in SSL_MODES:
        raise PredictdError(
            f"DATABASE_URL: sslmode must be one of {', '.join(SSL_MODES)}, not {mode!r}"
        )
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        return mode
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = mode == "verify-full"
    if mode == "require" and rootcert is None:
        context.verify_mode = ssl.CERT_NONE
    elif rootcert == "system":
        context.load_default_certs()
    else:
        _load(context.load_verify_locations, rootcert or _default_root(mode))
    if cert is not None:
        _load(lambda path: context.load_cert_chain(path, keyfile=key), cert)
    elif key is not None:
        raise PredictdError("DATABASE_URL: sslkey needs sslcert (the certificate it belongs to)")
    return context


def _default_root(mode: str) -> str:
    path = Path("~/.postgresql/root.crt").expanduser()
    if not path.is_file():
        raise PredictdError(
            f"DATABASE_URL: sslmode={mode} needs the server's CA: add sslrootcert=<file> to the "
            f"URL (or sslrootcert=system for the system's CAs); {path} does not exist"
        )
    return str(path)


def _load(loader: Callable[[str], object], path: str) -> None:
    """Run ``loader(path)``; a missing or bad file is a one-line configuration error."""
    try:
        loader(path)
    except (OSError, ssl.SSLError) as exc:
        raise PredictdError(f"DATABASE_URL: cannot use TLS file {path}: {exc}") from None
