"""ModelRegistry: registers artifacts, runs lifecycle changes, and opens verified runtimes.
What a server serves, and when it swaps, is the loader's business (registry/loader.py)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from predictd.access import audit
from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.errors import ArtifactError, Conflict, ModelNotFound
from predictd.inference.runtime import Label, ModelRuntime, TextVocabulary
from predictd.inference.values import ItemInput
from predictd.registry import events
from predictd.registry.artifacts import ArtifactStore
from predictd.registry.datasets import (
    Dataset,
    DatasetFile,
    DatasetSpec,
    read_dataset,
)
from predictd.registry.manifest import LoadManifest
from predictd.registry.models import ModelVersion, Stage
from predictd.registry.repository import ModelVersionRepository
from predictd.settings import InferenceSettings

log = logging.getLogger("predictd.registry")

T = TypeVar("T")
VOCABULARIES_KEPT = 4  # text models' vocabularies held for drift runs

# Measures a new version on the runtime serving will open; what it returns joins the version's
# reference profile. The caller supplies it (monitoring.profile.validation_profiler): what a
# profile holds is monitoring's business, the registry only keeps it.
Profiler = Callable[[ModelRuntime], Mapping[str, Any]]
# Builds the profiler from a version's validation rows (validation_profiler, its settings bound).
ValidationProfiler = Callable[[Sequence[tuple[ItemInput, Label]]], Profiler | None]


class ModelRegistry:
    def __init__(self, settings: InferenceSettings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.store = ArtifactStore.from_settings(settings)
        self.manifest = LoadManifest(settings.artifact_dir)
        self._vocabularies: dict[tuple[str, int], TextVocabulary | None] = {}

    def inspect(
        self,
        path: Path,
        name: str,
        *,
        metrics: dict[str, float] | None = None,
        description: str | None = None,
        training_samples: int | None = None,
        feature_names: tuple[str, ...] | None = None,
        profiler: Profiler | None = None,
        reference_profile: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        parent_version: int | None = None,
        training_data: DatasetFile | None = None,
        validation_data: DatasetFile | None = None,
        profile_validation: ValidationProfiler | None = None,
        training_run: dict[str, Any] | None = None,
        hyperparameters: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Describe the artifact and store it; version 0 until the database assigns one. A
        directory (or .tar.gz/.zip of one) is a transformer export, stored as one bundle.
        The file is loaded, and any data read and checked against it, before anything is
        stored, so a bad file leaves nothing behind. ``profiler`` adds what it measures on the
        model to the reference profile, else ``profile_validation`` makes one from the
        validation data; ``parent_version``: the version of ``name`` this one was derived
        from. The training data's rows are the ``training_samples`` unless given;
        ``hyperparameters`` (e.g. an MLflow run's params) replace the estimator's own."""
        from predictd.inference.formats import open_artifact
        from predictd.inference.transformer_bundle import MAX_MODEL_BYTES
        from predictd.registry.archives import as_artifact, is_archive

        with ExitStack() as cleanup:
            if path.is_dir() or (path.is_file() and is_archive(path)):
                # A transformer export: packed into one bundle file, which is what is stored.
                tmp = cleanup.enter_context(
                    tempfile.TemporaryDirectory(prefix="predictd-artifact-")
                )
                source = path
                path, notes = as_artifact(source, Path(tmp), MAX_MODEL_BYTES)
                for note in notes:
                    log.info(note, extra={"model": name, "source": str(source)})
            if not path.is_file():
                raise ArtifactError(f"no artifact at {path}")

            flavor, runtime = open_artifact(path, self.settings)
            info = runtime.schema()
            version = ModelVersion(
                name=name,
                version=0,
                flavor=flavor,
                task=info.task,
                input_kind=info.input_kind,
                artifact_uri="",  # known once stored, below
                artifact_sha256="",
                stage="none",
                created_at=datetime.now(UTC),
                feature_names=feature_names or info.feature_names,
                classes=info.classes,
                algorithm=info.algorithm,
                metrics=metrics or {},
                training_samples=training_samples,
                description=description,
                reference_profile=dict(reference_profile or {}),
                hyperparameters=(
                    runtime.hyperparameters() if hyperparameters is None else dict(hyperparameters)
                ),
                tags=dict(tags or {}),
                parent_version=parent_version,
                training_run=training_run,
            )
            spec = dataset_spec(version)
            train = read_dataset(training_data, spec) if training_data is not None else None
            valid = read_dataset(validation_data, spec) if validation_data is not None else None
            if train is not None and training_samples is None:
                version = replace(version, training_samples=len(train))
            if profiler is None and valid is not None and profile_validation is not None:
                profiler = profile_validation(valid.examples())
            if profiler is not None:
                # Validation rows name features as the registry will (feature_names may rename
                # the artifact's positional x0, x1, ...): profile with the runtime serving opens.
                from predictd.inference.formats import runtime_for

                meta = version.meta(source="registry", loaded_at=version.created_at)
                named = runtime_for(flavor, path, meta, self.settings)
                named.prepare()
                profile = profiler(named)
                version = replace(
                    version, reference_profile={**version.reference_profile, **profile}
                )
            uri, sha = self.store.put(path)
            return replace(
                version,
                artifact_uri=uri,
                artifact_sha256=sha,
                training_data=self._put_dataset(training_data, train),
                validation_data=self._put_dataset(validation_data, valid),
            )

    def _put_dataset(
        self, source: DatasetFile | None, data: Dataset | None
    ) -> dict[str, Any] | None:
        """Store a checked dataset beside the artifacts; its reference for the registry."""
        if source is None or data is None:
            return None
        uri, sha = self.store.put(source.path)
        return {
            "uri": uri,
            "sha256": sha,
            "format": data.format,
            "rows": len(data),
            "label": source.label,
        }

    def read_dataset(self, ref: Mapping[str, Any], version: ModelVersion) -> Dataset:
        """A stored dataset (``training_data`` or ``validation_data``), its sha256 verified
        before it is read, parsed as it was checked at registration (blocking)."""
        try:
            uri, sha, fmt, label = (str(ref[k]) for k in ("uri", "sha256", "format", "label"))
        except (KeyError, TypeError):
            raise ArtifactError(
                f"{version.name} v{version.version}: a dataset reference "
                f"without uri, sha256, format and label: {ref!r}"
            ) from None
        path = self.store.verified_path(uri, sha)
        source = DatasetFile(path, label, f"{version.name} v{version.version}'s stored data")
        return read_dataset(source, dataset_spec(version), fmt=fmt)

    def open_estimator(self, version: ModelVersion) -> Any:
        """The version's fitted scikit-learn estimator, for retraining: its artifact's sha256
        is verified and its types checked exactly as for serving (blocking). A version in
        another format cannot be refitted: Conflict."""
        if version.flavor == "transformer":
            raise Conflict(
                f"{version.name} v{version.version} is a transformer: predictd train does not "
                "fine-tune transformers; fine-tune it with your own tooling, export it with "
                "`optimum-cli export onnx --task text-classification`, and register the result"
            )
        if version.flavor != "sklearn":
            raise Conflict(
                f"{version.name} v{version.version} is a {version.flavor} artifact; "
                "retraining refits skops (scikit-learn) artifacts only"
            )
        from predictd.inference.sklearn_runtime import load_estimator

        path = self.store.verified_path(version.artifact_uri, version.artifact_sha256)
        return load_estimator(path, self.settings.trusted_types)

    async def _change(
        self,
        what: str,
        name: str,
        work: Callable[[ModelVersionRepository], Awaitable[T]],
        action: str,
    ) -> T:
        """Run one lifecycle change of ``name`` in its own transaction, announced to every
        server when it commits; retried briefly when a concurrent change got there first
        (unique index, SQLite's writer lock)."""
        async with translate_errors(what):
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(6),
                wait=wait_random_exponential(multiplier=0.02, max=0.5),
                retry=retry_if_exception_type((IntegrityError, OperationalError)),
                reraise=True,
            ):
                with attempt:
                    async with self.db.engine.begin() as conn:
                        result = await work(ModelVersionRepository(conn))
                        await audit.record(conn, f"models.{action}", name, after=_summary(result))
                        await events.publish(conn, name)
                        return result
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def register(
        self, candidate: ModelVersion, *, stage: Stage = "production", reuse: bool = True
    ) -> ModelVersion:
        """Give ``candidate`` the next version number (or reuse the version already holding
        the same artifact) and move it to ``stage``."""

        async def work(repo: ModelVersionRepository) -> ModelVersion:
            await repo.lock_name(candidate.name)
            existing = await repo.by_sha(candidate.name, candidate.artifact_sha256)
            if existing is not None and reuse:
                if stage == "production" and existing.stage != "production":
                    await repo.promote(existing.name, existing.version)
                    return await self._get(repo, existing.name, existing.version)
                return existing
            version = replace(
                candidate,
                version=await repo.next_version(candidate.name),
                stage="none",
                created_at=datetime.now(UTC),
            )
            await repo.add(version)
            if stage == "production":
                await repo.promote(version.name, version.version)
            elif stage != "none":
                await repo.set_stage(version.name, version.version, stage)
            return await self._get(repo, version.name, version.version)

        return await self._change("registering a model", candidate.name, work, "register")

    async def promote(self, name: str, version: int) -> ModelVersion:
        """Make ``version`` the production version; the previous one is archived."""

        async def work(repo: ModelVersionRepository) -> ModelVersion:
            await repo.lock_name(name)
            target = await self._get(repo, name, version)
            if target.stage != "production":
                await repo.promote(name, version)
            return await self._get(repo, name, version)

        return await self._change("promoting a model", name, work, "promote")

    async def rollback(self, name: str, *, only_from: int | None = None) -> ModelVersion:
        """Promote the version that was production before the current one. ``only_from``:
        only while that version is production (checked under the name's lock, so a rollback
        run twice at once does not go back two versions); else production is returned."""

        async def work(repo: ModelVersionRepository) -> ModelVersion:
            await repo.lock_name(name)
            if not await repo.list(name):
                raise ModelNotFound(f"no model named {name!r}")
            if only_from is not None:
                current = await repo.production(name)
                if current is not None and current.version != only_from:
                    return current
            previous = await repo.previous_production(name)
            if previous is None:
                raise Conflict(f"{name!r} has no previous production version to roll back to")
            await repo.promote(name, previous.version)
            return await self._get(repo, name, previous.version)

        return await self._change("rolling back a model", name, work, "rollback")

    async def stage(self, name: str, version: int) -> ModelVersion:
        """Make ``version`` a candidate: with canary or shadow traffic on, servers send it
        a share of requests (the newest staging version per name is the candidate)."""

        async def work(repo: ModelVersionRepository) -> ModelVersion:
            await repo.lock_name(name)
            target = await self._get(repo, name, version)
            if target.stage == "production":
                raise Conflict(f"{name!r} v{version} is already the production version")
            await repo.set_stage(name, version, "staging")
            return await self._get(repo, name, version)

        return await self._change("staging a model", name, work, "stage")

    async def archive(self, name: str, version: int) -> ModelVersion:
        async def work(repo: ModelVersionRepository) -> ModelVersion:
            await repo.lock_name(name)
            target = await self._get(repo, name, version)
            if target.stage == "production":
                raise Conflict(
                    f"{name!r} v{version} is the production version: promote another version "
                    "or roll back before archiving it"
                )
            await repo.set_stage(name, version, "archived")
            return await self._get(repo, name, version)

        return await self._change("archiving a model", name, work, "archive")

    async def vocabulary(self, name: str, version: int) -> TextVocabulary | None:
        """A text model's tokenizer and vocabulary, for drift: the version's artifact is
        opened (verified, off the event loop) once and the last few are kept."""
        key = (name, version)
        if key not in self._vocabularies:
            found = await self.get(name, version)
            runtime = await asyncio.to_thread(self.open_runtime, found, source="drift")
            while len(self._vocabularies) >= VOCABULARIES_KEPT:
                self._vocabularies.pop(next(iter(self._vocabularies)))
            self._vocabularies[key] = runtime.vocabulary()
        return self._vocabularies[key]

    async def get(self, name: str, version: int) -> ModelVersion:
        async with translate_errors("reading the registry"), self.db.engine.connect() as conn:
            return await self._get(ModelVersionRepository(conn), name, version)

    @staticmethod
    async def _get(repo: ModelVersionRepository, name: str, version: int) -> ModelVersion:
        found = await repo.get(name, version)
        if found is None:
            raise ModelNotFound(f"model {name!r} version {version} not found")
        return found

    async def production(self, name: str | None) -> ModelVersion | None:
        async with translate_errors("reading the registry"), self.db.engine.connect() as conn:
            return await ModelVersionRepository(conn).production(name)

    async def serving_versions(self, names: list[str] | None = None) -> list[ModelVersion]:
        async with translate_errors("reading the registry"), self.db.engine.connect() as conn:
            return await ModelVersionRepository(conn).serving(names)

    async def list_versions(self, name: str | None = None) -> list[ModelVersion]:
        async with translate_errors("reading the registry"), self.db.engine.connect() as conn:
            return await ModelVersionRepository(conn).list(name)

    def open_runtime(self, version: ModelVersion, *, source: str) -> ModelRuntime:
        """Verify the artifact's sha256, load it, check its schema against the registry and
        warm it up (blocking: call in a thread). Raises ArtifactError on any failure."""
        path = self.store.verified_path(version.artifact_uri, version.artifact_sha256)
        meta = version.meta(source=source, loaded_at=datetime.now(UTC))
        from predictd.inference.formats import runtime_for

        runtime = runtime_for(version.flavor, path, meta, self.settings)
        runtime.prepare()
        return runtime

    async def artifact_from_path(self) -> ModelVersion | None:
        """The artifact given with ``--model``, stored and described (not yet registered)."""
        s = self.settings
        if s.model_path is None:
            return None
        name = s.model_name or model_name_of(s.model_path)
        return await asyncio.to_thread(self.inspect, s.model_path, name)

    async def load(self, version: ModelVersion, source: str) -> ModelRuntime:
        runtime = await asyncio.to_thread(self.open_runtime, version, source=source)
        log.info(
            "model loaded",
            extra={"model": version.name, "version": version.version, "source": source},
        )
        return runtime


def dataset_spec(version: ModelVersion) -> DatasetSpec:
    return DatasetSpec(version.input_kind, version.task, version.feature_names, version.classes)


def _summary(result: object) -> dict[str, object] | None:
    """What the audit log keeps of a lifecycle change's outcome."""
    if isinstance(result, ModelVersion):
        return {"version": result.version, "stage": result.stage, "sha256": result.artifact_sha256}
    return None


def model_name_of(path: Path) -> str:
    """The name ``--model PATH`` serves under: the file or directory name without its
    suffix (``export.tar.gz`` and ``export/`` are both ``export``)."""
    from predictd.registry.archives import SUFFIXES

    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.is_file() else name
