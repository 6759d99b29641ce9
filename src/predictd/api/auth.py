"""The admin bearer token that guards registry changes over HTTP."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from predictd.api.deps import ServicesDep
from predictd.errors import Forbidden, Unauthorized


async def require_admin(request: Request, services: ServicesDep) -> None:
    token = services.settings.admin_token
    if token is None:
        raise Forbidden(
            "registry changes over HTTP are disabled: set PREDICTD_ADMIN_TOKEN and send "
            "'Authorization: Bearer <token>'"
        )
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected):
        raise Unauthorized("missing or invalid bearer token")


AdminDep = Annotated[None, Depends(require_admin)]
