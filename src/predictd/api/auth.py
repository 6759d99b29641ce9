"""Deny by default: every route names the scope it needs through one dependency, ``Needs``.

A request is admitted when its `Authorization: Bearer <key>` is a live key holding the scope
(``admin`` holds all), or, with PREDICTD_AUTH=off, when it carries no key and the scope is
predict or read. Anything else is refused: 401 without a valid key, 403 without the scope, 503
while keys cannot be checked. Refusals go to the audit log in the background, bounded, so a
flood of bad requests cannot queue writes without end. An admitted request's key is who the
audit log names for whatever it changes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from predictd.access import audit
from predictd.access.keys import NEEDED, Principal
from predictd.access.scopes import ANONYMOUS, Scope, grants
from predictd.api.deps import Services
from predictd.errors import Forbidden, TooManyRequests, Unauthorized
from predictd.observability import request_id_var


class Needs:
    """The dependency a route declares its scope with (``scope`` is read by the test that
    checks every route has one)."""

    def __init__(self, scope: Scope) -> None:
        self.scope: Scope = scope

    # Services come straight from the app, not as a sub-dependency: every request resolves
    # this, and FastAPI's dependency solving costs more per level than the lookup.
    async def __call__(self, request: Request) -> Principal:
        return await self.admit(request, request.app.state.services)

    async def admit(self, request: Request, services: Services) -> Principal:
        header = request.headers.get("authorization")
        if header is None and services.settings.auth == "off" and self.scope in ANONYMOUS:
            principal = Principal(None, ANONYMOUS)
        else:
            principal = await self._authenticate(header, request, services)
        audit.set_actor(audit.Actor(principal.name, self.scope, request_id_var.get()))
        if services.limiter.enabled:
            await services.limiter.admit(
                f"key:{principal.name}" if principal.name else f"ip:{_address(request)}"
            )
        return principal

    async def _authenticate(
        self, header: str | None, request: Request, services: Services
    ) -> Principal:
        scheme, _, presented = (header or "").partition(" ")
        presented = presented.strip()
        principal = None
        if scheme.lower() == "bearer" and presented:
            found = services.keys.cached(presented)
            if found is NEEDED:  # a lookup: only for an address that may still be refused
                await self._within_budget(request, services)
                found = await services.keys.look_up(presented)  # 503 with no way to check
            principal = found
        if principal is None:
            await self._refuse(request, services, None)
            raise Unauthorized(
                "send a valid API key: 'Authorization: Bearer <key>'"
                if header
                else f"this endpoint needs an API key with the {self.scope!r} scope"
            )
        if not grants(principal.scopes, self.scope):
            await self._refuse(request, services, principal.name)
            raise Forbidden(f"key {principal.name!r} lacks the {self.scope!r} scope")
        return principal

    async def _within_budget(self, request: Request, services: Services) -> None:
        """429 before an unknown key is looked up, for an address out of refusals."""
        try:
            await services.limiter.refusals.check(_address(request))
        except TooManyRequests:
            self._note(request, services, None)
            raise

    async def _refuse(self, request: Request, services: Services, key_name: str | None) -> None:
        """Count the refusal; 429 instead when the address has used up its refusals."""
        self._note(request, services, key_name)
        await services.limiter.refusals.spend(_address(request))

    def _note(self, request: Request, services: Services, key_name: str | None) -> None:
        actor = audit.Actor(key_name, self.scope, request_id_var.get())
        services.refusals.note(_address(request), actor, f"{request.method} {request.url.path}")


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


PredictScope = Annotated[Principal, Depends(Needs("predict"))]
ReadScope = Annotated[Principal, Depends(Needs("read"))]
OperateScope = Annotated[Principal, Depends(Needs("operate"))]
ApproveScope = Annotated[Principal, Depends(Needs("approve"))]
AdminScope = Annotated[Principal, Depends(Needs("admin"))]


def check_scope(principal: Principal, scope: Scope) -> None:
    """A further scope one request needs for part of what it asks (e.g. inputs in
    /analytics/recent need admin)."""
    if principal.name is None:
        raise Unauthorized(f"this needs an API key with the {scope!r} scope")
    if not grants(principal.scopes, scope):
        raise Forbidden(f"key {principal.name!r} lacks the {scope!r} scope this needs")


__all__ = [
    "AdminScope",
    "ApproveScope",
    "Needs",
    "OperateScope",
    "PredictScope",
    "ReadScope",
    "check_scope",
]
