"""Body of /whoami."""

from __future__ import annotations

from pydantic import BaseModel, Field

from predictd.access.scopes import Scope


class Identity(BaseModel):
    key: str | None = Field(description="the API key's name; null without a key (auth off)")
    scopes: list[Scope] = Field(description="what it holds (admin holds every other scope)")
