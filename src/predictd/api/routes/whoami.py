"""GET /whoami: the caller's key and scopes, so a client (the dashboard) offers only what the
key may do. The server decides every request again regardless."""

from __future__ import annotations

from fastapi import APIRouter

from predictd.access.scopes import SCOPES
from predictd.api.auth import ReadScope
from predictd.schemas.access import Identity

router = APIRouter(tags=["access"])


@router.get("/whoami")
async def whoami(who: ReadScope) -> Identity:
    return Identity(key=who.name, scopes=[s for s in SCOPES if s in who.scopes])
