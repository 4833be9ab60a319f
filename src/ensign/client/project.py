"""``ProjectClient``: register, read, stage, change, pull, copy and move versions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ensign.backend import Backend, open_backend
from ensign.client.pull import pull_version
from ensign.config import resolve_project
from ensign.names import check_project_key
from ensign.promotion.register import manifest_of, register_version, select_refs
from ensign.records import ArtifactRef, ArtifactVersion, Run, StageCondition, Stages
from ensign.registry import VersionSpec
from ensign.storage.hashing import Progress

__all__ = ["ProjectClient"]

_ARTIFACT = "artifact"
_MODEL = "model"


class ProjectClient:
    """Everything about one project's versions and runs.

    Args:
        project: ``owner/name`` or ``name``; else ``ENSIGN_PROJECT``, else ``default``.
        tracking_uri: Where metadata lives; else ``ENSIGN_TRACKING_URI``, else ``./.ensign``.
        artifacts_uri: Where new bytes go (only needed by stores never given one).

    Every ``*_artifact_version`` method has a ``*_model_version`` twin that does the same
    for model versions.
    """

    def __init__(
        self,
        project: str | None = None,
        tracking_uri: str | os.PathLike[str] | None = None,
        artifacts_uri: str | os.PathLike[str] | None = None,
    ) -> None:
        self.project = check_project_key(resolve_project(project))
        self.backend: Backend = open_backend(tracking_uri, artifacts_uri)

    def __repr__(self) -> str:
        return f"ProjectClient(project={self.project!r})"

    def close(self) -> None:
        """Release the client's connections."""
        self.backend.close()

    def __enter__(self) -> ProjectClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # the operations, for either kind ------------------------------------------------------

    def _register(
        self,
        kind: str,
        version: str,
        description: str | None,
        tags: Sequence[str] | None,
        content: dict[str, Any] | None,
        run: str | None,
        artifacts: Sequence[str] | None,
        force: bool,
    ) -> ArtifactVersion:
        manifest: dict[str, dict[str, Any]] = {}
        store_uri = None
        carried: list[str] = list(artifacts or [])
        if run is not None:
            refs = self.backend.registry.list_refs(run)
            chosen = select_refs(refs, artifacts)
            manifest, store_uri = manifest_of(chosen)
            carried = [r.name for r in chosen]
        spec = VersionSpec(
            name=version,
            description=description,
            tags=list(tags or []),
            content=dict(content or {}),
            run=run,
            artifacts=carried,
            manifest=manifest,
            store_uri=store_uri,
        )
        return register_version(self.backend, self.project, kind, spec, force=force)

    def _copy(
        self, kind: str, version: str, to_project: str | None, name: str | None, force: bool
    ) -> ArtifactVersion:
        source = self.backend.registry.get_version(self.project, kind, version)
        target_project = check_project_key(to_project) if to_project else self.project
        if name is None and target_project != self.project:
            name = source.name
        spec = VersionSpec(
            name=name,
            description=source.description,
            tags=source.tags,
            content={**source.content, "copied_from": f"{self.project}:{source.name}"},
            run=source.run,
            artifacts=source.artifacts,
            manifest=source.manifest,
            store_uri=source.store_uri,
        )
        return register_version(self.backend, target_project, kind, spec, force=force)

    def _lineage(self, kind: str, version: str) -> list[ArtifactRef]:
        found = self.backend.registry.get_version(self.project, kind, version)
        if found.run is None:
            return []
        carried = set(found.artifacts)
        return [
            r for r in self.backend.registry.list_refs(found.run) if r.is_input or r.name in carried
        ]

    def _pull(
        self,
        kind: str,
        version: str,
        path: str | os.PathLike[str],
        download_artifacts: bool,
        force: bool,
        progress: Progress | None,
    ) -> Path:
        found = self.backend.registry.get_version(self.project, kind, version)
        return pull_version(
            self.backend,
            found,
            path,
            download_artifacts=download_artifacts,
            force=force,
            progress=progress,
        )

    # artifact versions --------------------------------------------------------------------

    def register_artifact_version(
        self,
        version: str,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        content: dict[str, Any] | None = None,
        run: str | None = None,
        artifacts: Sequence[str] | None = None,
        force: bool = False,
    ) -> ArtifactVersion:
        """Register a version, optionally carrying a run's lineage entries.

        Args:
            version: The name (``[A-Za-z0-9._-]``, at most 128).
            description: Free text.
            tags: Tags.
            content: A JSON object.
            run: The producing run; its refs named by ``artifacts`` (all its outputs when
                ``None``) are carried with their bytes.
            artifacts: Names of the run's lineage entries.
            force: Replace a version of the same name, in one transaction.

        Raises:
            VersionExists: the name is taken and ``force`` is false.
            InvalidName: the name breaks the rules.
            ArtifactNotFound: ``artifacts`` names an entry the run does not have.
        """
        return self._register(_ARTIFACT, version, description, tags, content, run, artifacts, force)

    def get_artifact_version(self, version: str) -> ArtifactVersion:
        """Return a version; :class:`~ensign.errors.VersionNotFound` when there is none."""
        return self.backend.registry.get_version(self.project, _ARTIFACT, version)

    def list_artifact_versions(
        self, query: str | None = None, sort: str | None = None, limit: int = 20, offset: int = 0
    ) -> list[ArtifactVersion]:
        """Return versions, newest first.

        Args:
            query: Terms like ``stage:production``, ``tags:prod``, ``name:v1|v2``, joined by
                ``,``; ``field:~value`` negates.
            sort: ``created_at``, ``updated_at``, ``name`` or ``stage``; ``-`` for descending.
            limit: At most this many.
            offset: Skip this many.
        """
        return self.backend.registry.list_versions(
            self.project, _ARTIFACT, query, sort, limit, offset
        )

    def stage_artifact_version(
        self,
        version: str,
        stage: str | Stages,
        reason: str | None = None,
        message: str | None = None,
    ) -> ArtifactVersion:
        """Move a version to a stage; :class:`~ensign.errors.InvalidStage` lists the valid ones."""
        return self.backend.registry.stage_version(
            self.project, _ARTIFACT, version, str(stage), reason, message
        )

    def get_artifact_version_stages(self, version: str) -> list[StageCondition]:
        """Return a version's stage history, oldest first."""
        return self.get_artifact_version(version).stage_conditions

    def patch_artifact_version(self, version: str, data: dict[str, Any]) -> ArtifactVersion:
        """Change ``description``, ``tags``, ``content`` or ``name`` of a version."""
        return self.backend.registry.patch_version(self.project, _ARTIFACT, version, data)

    def delete_artifact_version(self, version: str) -> None:
        """Delete a version (its bytes go at the next ``ensign gc`` if nothing else uses them)."""
        self.backend.registry.delete_version(self.project, _ARTIFACT, version)

    def pull_artifact_version(
        self,
        version: str,
        path: str | os.PathLike[str],
        download_artifacts: bool = True,
        force: bool = False,
        progress: Progress | None = None,
    ) -> Path:
        """Write a version's files under ``path``, verifying every digest.

        Raises:
            TargetNotEmpty: ``path`` holds files and ``force`` is false.
            DigestMismatch: stored bytes no longer match; names the file.
        """
        return self._pull(_ARTIFACT, version, path, download_artifacts, force, progress)

    def copy_artifact_version(
        self,
        version: str,
        to_project: str | None = None,
        name: str | None = None,
        force: bool = False,
    ) -> ArtifactVersion:
        """Copy a version (no byte moves); in the same project an unnamed copy takes ``vN``."""
        return self._copy(_ARTIFACT, version, to_project, name, force)

    def transfer_artifact_version(self, version: str, to_project: str) -> ArtifactVersion:
        """Move a version to another project, keeping its name and history."""
        return self.backend.registry.transfer_version(self.project, _ARTIFACT, version, to_project)

    def get_artifact_version_lineage(self, version: str) -> list[ArtifactRef]:
        """Return the producing run's inputs and the entries the version carries."""
        return self._lineage(_ARTIFACT, version)

    # model versions -----------------------------------------------------------------------

    def register_model_version(
        self,
        version: str,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        content: dict[str, Any] | None = None,
        run: str | None = None,
        artifacts: Sequence[str] | None = None,
        force: bool = False,
    ) -> ArtifactVersion:
        """Register a model version (see :meth:`register_artifact_version`)."""
        return self._register(_MODEL, version, description, tags, content, run, artifacts, force)

    def get_model_version(self, version: str) -> ArtifactVersion:
        """Return a model version."""
        return self.backend.registry.get_version(self.project, _MODEL, version)

    def list_model_versions(
        self, query: str | None = None, sort: str | None = None, limit: int = 20, offset: int = 0
    ) -> list[ArtifactVersion]:
        """Return model versions (see :meth:`list_artifact_versions`)."""
        return self.backend.registry.list_versions(self.project, _MODEL, query, sort, limit, offset)

    def stage_model_version(
        self,
        version: str,
        stage: str | Stages,
        reason: str | None = None,
        message: str | None = None,
    ) -> ArtifactVersion:
        """Move a model version to a stage."""
        return self.backend.registry.stage_version(
            self.project, _MODEL, version, str(stage), reason, message
        )

    def get_model_version_stages(self, version: str) -> list[StageCondition]:
        """Return a model version's stage history."""
        return self.get_model_version(version).stage_conditions

    def patch_model_version(self, version: str, data: dict[str, Any]) -> ArtifactVersion:
        """Change a model version."""
        return self.backend.registry.patch_version(self.project, _MODEL, version, data)

    def delete_model_version(self, version: str) -> None:
        """Delete a model version."""
        self.backend.registry.delete_version(self.project, _MODEL, version)

    def pull_model_version(
        self,
        version: str,
        path: str | os.PathLike[str],
        download_artifacts: bool = True,
        force: bool = False,
        progress: Progress | None = None,
    ) -> Path:
        """Write a model version's files under ``path``, verifying every digest."""
        return self._pull(_MODEL, version, path, download_artifacts, force, progress)

    def copy_model_version(
        self,
        version: str,
        to_project: str | None = None,
        name: str | None = None,
        force: bool = False,
    ) -> ArtifactVersion:
        """Copy a model version."""
        return self._copy(_MODEL, version, to_project, name, force)

    def transfer_model_version(self, version: str, to_project: str) -> ArtifactVersion:
        """Move a model version to another project."""
        return self.backend.registry.transfer_version(self.project, _MODEL, version, to_project)

    def get_model_version_lineage(self, version: str) -> list[ArtifactRef]:
        """Return a model version's lineage."""
        return self._lineage(_MODEL, version)

    # runs ---------------------------------------------------------------------------------

    def list_runs(
        self, query: str | None = None, sort: str | None = None, limit: int = 20, offset: int = 0
    ) -> list[Run]:
        """Return the project's runs, newest first.

        Args:
            query: Terms like ``status:succeeded``, ``tags:baseline``, ``is_promoted:true``.
            sort: ``started_at``, ``ended_at``, ``name`` or ``status``; ``-`` for descending.
            limit: At most this many.
            offset: Skip this many.
        """
        return self.backend.registry.list_runs(self.project, query, sort, limit, offset)
