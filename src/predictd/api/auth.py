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
from predictd.access.keyring import NEEDED
from predictd.access.keys import Principal
from predictd.access.limits import client_key
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
        if header is None and services.settings.access.auth == "off" and self.scope in ANONYMOUS:
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
        principal, spent = None, False  # spent: its refusal was paid for before the lookup
        if scheme.lower() == "bearer" and presented:
            found = services.keys.cached(presented)
            if found is NEEDED:
                principal, spent = await self._look_up(presented, request, services)
            else:
                principal = found
        if principal is None:
            if spent:
                self._note(request, services, None)
            else:
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

    async def _look_up(
        self, presented: str, request: Request, services: Services
    ) -> tuple[Principal | None, bool]:
        """The key's principal (None: refused), and whether its refusal is paid for already.
        A lookup costs its address a refusal before the database is asked (429 without one,
        or with too many of its keys being looked up already), given back when the key is
        valid; joining a lookup of the same key already running costs nothing. 503 when the
        key cannot be checked."""
        address = _address(request)
        keys, budget = services.keys, services.limiter.refusals
        spent = not keys.pending(presented)
        try:
            if spent:
                await budget.spend(address)
            found = await keys.look_up(presented, address)
        except TooManyRequests:
            self._note(request, services, None)
            raise
        if found is not None and spent:
            await budget.refund(address)
        return found, spent and found is None

    async def _refuse(self, request: Request, services: Services, key_name: str | None) -> None:
        """Count the refusal; 429 instead when the address has used up its refusals."""
        self._note(request, services, key_name)
        await services.limiter.refusals.spend(_address(request))

    def _note(self, request: Request, services: Services, key_name: str | None) -> None:
        actor = audit.Actor(key_name, self.scope, request_id_var.get())
        services.refusals.note(_address(request), actor, f"{request.method} {request.url.path}")


def _address(request: Request) -> str:
    """The client as limits and the audit log know it (an IPv6 client by its /64)."""
    return client_key(request.client.host if request.client else None)


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
