"""Model versions, artifacts and the choice of what to serve."""

from predictd.registry.artifacts import ArtifactStore
from predictd.registry.models import ModelVersion
from predictd.registry.service import ModelRegistry

__all__ = ["ArtifactStore", "ModelRegistry", "ModelVersion"]
