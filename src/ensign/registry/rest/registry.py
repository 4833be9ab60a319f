"""``RestRegistry``: the :class:`~ensign.registry.base.Registry` over an ``ensign server``.

Each method is one request to the native API (see :mod:`ensign.server.routes`); records
travel in the JSON form of :mod:`ensign.registry.wire` and errors come back as the same
exception classes, with the same messages, as in embedded mode.  ``create_run`` chooses
the run id on the client (unless given), so a retried create never makes two runs, and
``write_batch`` sends a whole :class:`~ensign.registry.RunBatch` in one request.
"""

from __future__ import annotations

import contextlib
import enum
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from ensign.records import (
    ArtifactRef,
    ArtifactVersion,
    MetricPoint,
    Project,
    PromotionDecision,
    Run,
)
from ensign.registry.base import RunBatch, VersionSpec
from ensign.registry.rest.session import RestSession
from ensign.registry.wire import (
    batch_to_wire,
    decision_from_wire,
    decision_to_wire,
    metrics_from_wire,
    project_from_wire,
    ref_from_wire,
    run_from_wire,
    spec_to_wire,
    version_from_wire,
)

__all__ = ["RestRegistry"]

_API = "/api/v1"


def _text(value: object) -> str:
    """Return an enum member's value (``Stages.PRODUCTION`` -> ``production``) or ``str``."""
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def _segment(text: object) -> str:
    return quote(_text(text), safe="")


def _listing(
    query: str | None, sort: str | None, limit: int, offset: int, **extra: str
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit, "offset": offset, **extra}
    if query is not None:
        params["query"] = query
    if sort is not None:
        params["sort"] = sort
    return params


class RestRegistry:
    """The registry behind an ``ensign server``.

    Args:
        base_url: ``http(s)://host:port``.
        token: The bearer token; else ``ENSIGN_TOKEN`` (read now).
        session: A session to share (with a :class:`~ensign.registry.rest.RemoteBlobStore`);
            made from ``base_url`` and ``token`` when ``None``.
    """

    def __init__(
        self, base_url: str, token: str | None = None, *, session: RestSession | None = None
    ) -> None:
        self.session = session if session is not None else RestSession(base_url, token)
        self.url = self.session.base_url

    def __repr__(self) -> str:
        return f"RestRegistry({self.url!r})"

    def close(self) -> None:
        """Close the connections."""
        self.session.close()

    def content_keys(self, scope: str) -> contextlib.AbstractContextManager[None]:
        """Make each write in the block idempotent by its content.

        See :meth:`RestSession.content_keys`: what a sync sends twice is written once.
        """
        return self.session.content_keys(scope)

    def _run(self, run_uuid: str) -> str:
        return f"{_API}/runs/{_segment(run_uuid)}"

    @staticmethod
    def _version(kind: object, name: str) -> str:
        return f"{_API}/versions/{_segment(kind)}/{_segment(name)}"

    # settings -----------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        """Return a store-wide setting, ``None`` when unset (an administrator's token)."""
        answer = self.session.call("GET", f"{_API}/settings/{_segment(key)}")
        value = answer["value"]
        return None if value is None else str(value)

    def remember_setting(self, key: str, value: str) -> str:
        """Set a store-wide setting unless it is set already; return the value in force."""
        answer = self.session.call(
            "POST", f"{_API}/settings/{_segment(key)}", payload={"value": value}
        )
        return str(answer["value"])

    # projects -----------------------------------------------------------------------------

    def create_project(self, key: str, description: str | None = None) -> Project:
        """Create a project; :class:`~ensign.errors.Conflict` when the key is taken."""
        answer = self.session.call(
            "POST", f"{_API}/projects", payload={"key": key, "description": description}
        )
        return project_from_wire(answer)

    def ensure_project(self, key: str) -> Project:
        """Return a project, creating it when it does not exist."""
        answer = self.session.call("POST", f"{_API}/projects/ensure", payload={"key": key})
        return project_from_wire(answer)

    def get_project(self, key_or_id: str) -> Project:
        """Return a project by key or id."""
        path = "/".join(_segment(part) for part in key_or_id.split("/"))
        return project_from_wire(self.session.call("GET", f"{_API}/projects/{path}"))

    def list_projects(self) -> list[Project]:
        """Return every project, by key."""
        answer = self.session.call("GET", f"{_API}/projects")
        return [project_from_wire(p) for p in answer["projects"]]

    # runs ---------------------------------------------------------------------------------

    def create_run(
        self,
        project: str,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Sequence[str] = (),
        environment: dict[str, Any] | None = None,
        run_uuid: str | None = None,
    ) -> Run:
        """Create a running run in ``project`` (created when missing).

        The run id is chosen here when ``run_uuid`` is ``None``, so that the request's
        retries can never make two runs.
        """
        payload = {
            "project": project,
            "run_uuid": run_uuid or uuid.uuid4().hex,
            "name": name,
            "description": description,
            "tags": list(tags),
            "environment": dict(environment or {}),
        }
        return run_from_wire(self.session.call("POST", f"{_API}/runs", payload=payload))

    def get_run(self, run_uuid: str) -> Run:
        """Return a run."""
        return run_from_wire(self.session.call("GET", self._run(run_uuid)))

    def list_runs(
        self,
        project: str,
        query: str | None = None,
        sort: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Run]:
        """Return runs of a project, newest first unless ``sort`` says otherwise."""
        params = _listing(query, sort, limit, offset, project=project)
        answer = self.session.call("GET", f"{_API}/runs", params=params)
        return [run_from_wire(r) for r in answer["runs"]]

    def set_run_status(self, run_uuid: str, status: str, *, ended: bool = False) -> None:
        """Set a run's status; ``ended`` also stamps its end time."""
        payload = {"status": _text(status), "ended": ended}
        self.session.call("POST", f"{self._run(run_uuid)}/status", payload=payload)

    def write_batch(self, batch: RunBatch) -> None:
        """Send a run's buffered writes in one request (one transaction on the server)."""
        if not batch:
            return
        self.session.call(
            "POST",
            f"{self._run(batch.run_uuid)}/batch",
            payload=batch_to_wire(batch),
            idempotency_key=batch.key,
        )

    def last_steps(self, run_uuid: str) -> dict[str, int]:
        """Return the highest step of each metric of a run."""
        answer = self.session.call("GET", f"{self._run(run_uuid)}/last-steps")
        return {str(k): int(v) for k, v in answer["steps"].items()}

    def get_metrics(
        self, run_uuid: str, names: Sequence[str] | None = None
    ) -> dict[str, list[MetricPoint]]:
        """Return metric histories in step order."""
        params: dict[str, Any] = {}
        if names is not None:
            params = {"name": list(names), "filtered": "true"}
        answer = self.session.call("GET", f"{self._run(run_uuid)}/metrics", params=params)
        return metrics_from_wire(answer["metrics"])

    def list_refs(self, run_uuid: str) -> list[ArtifactRef]:
        """Return a run's lineage refs, inputs first."""
        answer = self.session.call("GET", f"{self._run(run_uuid)}/refs")
        return [ref_from_wire(r) for r in answer["refs"]]

    def record_decision(self, run_uuid: str, decision: PromotionDecision) -> None:
        """Store a promotion decision on a run."""
        self.session.call(
            "POST", f"{self._run(run_uuid)}/decisions", payload=decision_to_wire(decision)
        )

    def list_decisions(self, run_uuid: str) -> list[PromotionDecision]:
        """Return a run's promotion decisions, oldest first."""
        answer = self.session.call("GET", f"{self._run(run_uuid)}/decisions")
        return [decision_from_wire(d) for d in answer["decisions"]]

    # versions -----------------------------------------------------------------------------

    def create_version(
        self, project: str, kind: str, spec: VersionSpec, *, force: bool = False
    ) -> ArtifactVersion:
        """Register a version atomically (next ``vN`` when unnamed).

        The server commits it only once its store holds every blob the manifest names.
        """
        payload = {**spec_to_wire(spec), "force": force}
        answer = self.session.call(
            "POST",
            f"{_API}/versions/{_segment(kind)}",
            payload=payload,
            params={"project": project},
        )
        return version_from_wire(answer)

    def get_version(self, project: str, kind: str, name: str) -> ArtifactVersion:
        """Return a version."""
        answer = self.session.call("GET", self._version(kind, name), params={"project": project})
        return version_from_wire(answer)

    def list_versions(
        self,
        project: str,
        kind: str,
        query: str | None = None,
        sort: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[ArtifactVersion]:
        """Return versions of a project and kind, newest first unless ``sort`` says otherwise."""
        params = _listing(query, sort, limit, offset, project=project)
        answer = self.session.call("GET", f"{_API}/versions/{_segment(kind)}", params=params)
        return [version_from_wire(v) for v in answer["versions"]]

    def stage_version(
        self,
        project: str,
        kind: str,
        name: str,
        stage: str,
        reason: str | None = None,
        message: str | None = None,
    ) -> ArtifactVersion:
        """Move a version to ``stage``, keeping the history."""
        payload = {"stage": _text(stage), "reason": reason, "message": message}
        answer = self.session.call(
            "POST",
            f"{self._version(kind, name)}/stage",
            payload=payload,
            params={"project": project},
        )
        return version_from_wire(answer)

    def patch_version(
        self, project: str, kind: str, name: str, data: dict[str, Any]
    ) -> ArtifactVersion:
        """Change description, tags, content or name of a version."""
        answer = self.session.call(
            "PATCH", self._version(kind, name), payload=data, params={"project": project}
        )
        return version_from_wire(answer)

    def delete_version(self, project: str, kind: str, name: str) -> None:
        """Delete a version and its stage history."""
        self.session.call("DELETE", self._version(kind, name), params={"project": project})

    def transfer_version(
        self, project: str, kind: str, name: str, to_project: str
    ) -> ArtifactVersion:
        """Move a version to another project."""
        answer = self.session.call(
            "POST",
            f"{self._version(kind, name)}/transfer",
            payload={"to_project": to_project},
            params={"project": project},
        )
        return version_from_wire(answer)

    def stage_holder(self, project: str, kind: str, stage: str) -> ArtifactVersion | None:
        """Return the version that most recently entered ``stage``, if any holds it."""
        answer = self.session.call(
            "GET",
            f"{_API}/stage-holders/{_segment(kind)}/{_segment(stage)}",
            params={"project": project},
        )
        found = answer["version"]
        return None if found is None else version_from_wire(found)

    def referenced_digests(self) -> set[str]:
        """Return every blob digest a ref or version still names (an administrator's token)."""
        return set(self.session.call("GET", f"{_API}/blobs/referenced")["digests"])
