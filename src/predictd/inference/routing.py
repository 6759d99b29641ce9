"""Which version answers a request: production, or the candidate for a canary share.

A ``Deployment`` is what one model name serves. It is immutable and replaced whole on every
change, so a request that picked one up keeps a consistent production/candidate pair even if a
hot swap lands mid-request.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from predictd.errors import ModelNotFound
from predictd.inference.runtime import ModelRuntime

Variant = Literal["production", "canary", "shadow"]

_BUCKETS = 10_000  # canary resolution: 0.01 %


@dataclass(frozen=True, slots=True)
class Deployment:
    production: ModelRuntime
    candidate: ModelRuntime | None = None

    @property
    def name(self) -> str:
        return self.production.meta.name

    def pinned(self, version: int) -> tuple[ModelRuntime, Variant]:
        """The runtime answering as ``version`` (production or the candidate); 404 if this
        server does not serve that version."""
        if self.production.meta.version == version:
            return self.production, "production"
        if self.candidate is not None and self.candidate.meta.version == version:
            return self.candidate, "canary"
        served = ", ".join(str(v) for v in served_versions(self))
        raise ModelNotFound(
            f"version {version} of model {self.name!r} is not served here (serving: {served})"
        )


def served_versions(deployment: Deployment) -> list[int]:
    """The version numbers a deployment answers with: production, then its candidate."""
    candidate = deployment.candidate
    return [deployment.production.meta.version] + ([candidate.meta.version] if candidate else [])


def bucket(name: str, key: str) -> int:
    """A stable bucket in [0, 10000) for a request key, so a user sticks to one version.
    Salted with the model name so different models split the same users differently."""
    digest = hashlib.blake2b(f"{name}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BUCKETS


class TrafficSplit:
    def __init__(self, canary_percent: float) -> None:
        self.threshold = round(canary_percent * _BUCKETS / 100)
        self._random = random.Random()

    def choose(self, deployment: Deployment, key: str | None) -> tuple[ModelRuntime, Variant]:
        candidate = deployment.candidate
        if candidate is None or self.threshold == 0:
            return deployment.production, "production"
        drawn = (
            bucket(deployment.name, key) if key is not None else self._random.randrange(_BUCKETS)
        )
        if drawn < self.threshold:
            return candidate, "canary"
        return deployment.production, "production"
