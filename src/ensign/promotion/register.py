"""Registering a version from a run's lineage: the manifest, the blob check, the commit.

A version is committed only after every blob its manifest names is in the store, and
the commit is one transaction, so no reader ever sees half a version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ensign.backend import Backend
from ensign.errors import ArtifactNotFound, ConfigurationError, IntegrityError
from ensign.records import ArtifactRef, ArtifactVersion
from ensign.registry import VersionSpec

__all__ = ["manifest_of", "register_version", "select_refs"]


def select_refs(refs: Sequence[ArtifactRef], names: Sequence[str] | None) -> list[ArtifactRef]:
    """Return the output refs named by ``names`` (all outputs when ``None``).

    Raises:
        ArtifactNotFound: for a name the run has no ref for; lists the names it has.
    """
    outputs = {r.name: r for r in refs if not r.is_input}
    if names is None:
        return list(outputs.values())
    by_name = {**{r.name: r for r in refs if r.is_input}, **outputs}
    missing = [n for n in names if n not in by_name]
    if missing:
        known = ", ".join(sorted(by_name)) or "none"
        raise ArtifactNotFound(
            f"the run has no lineage entry named {', '.join(map(repr, missing))}; it has: {known}"
        )
    return [by_name[n] for n in names]


def manifest_of(refs: Sequence[ArtifactRef]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Return the version manifest for refs (``<ref name>/<path>``) and their store.

    Raises:
        ConfigurationError: when the refs' bytes live in different stores.
    """
    manifest: dict[str, dict[str, Any]] = {}
    stores = {r.store_uri for r in refs if r.manifest and r.store_uri}
    if len(stores) > 1:
        raise ConfigurationError(
            f"the artifacts live in different stores ({', '.join(sorted(stores))}); "
            "a version holds bytes of one store"
        )
    for ref in refs:
        for relative, entry in ref.manifest.items():
            manifest[f"{ref.name}/{relative}"] = {"digest": entry["digest"], "size": entry["size"]}
    return manifest, next(iter(stores), None)


def register_version(
    backend: Backend, project: str, kind: str, spec: VersionSpec, *, force: bool
) -> ArtifactVersion:
    """Commit a version after checking that its store holds every blob it names.

    Raises:
        IntegrityError: when a blob is missing from the store.
        VersionExists: when the name is taken and ``force`` is false.
    """
    if spec.manifest:
        store = backend.store_for(spec.store_uri)
        wanted = {entry["digest"]: path for path, entry in spec.manifest.items()}
        lacking = store.missing(wanted)
        if lacking:
            names = ", ".join(sorted(wanted[d] for d in lacking))
            raise IntegrityError(f"the store {store.uri} lacks the bytes of {names}")
    return backend.registry.create_version(project, kind, spec, force=force)
