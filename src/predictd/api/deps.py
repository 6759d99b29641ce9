"""Typed access to what the lifespan built, for route handlers."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request
from pydantic import BeforeValidator

from predictd.inference.service import RequestContext
from predictd.services import Services as Services  # the routes' import of it

# Ids and version numbers are 32-bit integers in the database: larger ones are 422, not 500.
MAX_ID = 2**31 - 1
_ASCII_NUMBER = re.compile(r"[0-9]{1,10}")


def _ascii_digits(value: object) -> object:
    if isinstance(value, str) and _ASCII_NUMBER.fullmatch(value) is None:
        raise ValueError("a version is a number written in ASCII digits")
    return value


AsciiDigits = BeforeValidator(_ascii_digits)
"""Put in the Annotated of every version parameter, after its ``Path``/``Query`` (before it,
the OpenAPI schema loses its bounds). ``int()`` alone would also take Arabic-Indic digits,
"+1", " 1" and "1_0" (and fail on a superscript two)."""


# Dependencies are async on purpose: FastAPI runs a plain `def` dependency in a thread pool,
# which would cost two thread hops on every prediction.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def context_of(request: Request) -> RequestContext:
    client = request.scope.get("client")
    return RequestContext(
        request_id=request.scope.get("state", {}).get("request_id"),
        client_ip=client[0] if client else None,
        user_agent=request.headers.get("user-agent"),
    )


async def get_context(request: Request) -> RequestContext:
    return context_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
