"""``RunClient``: read a run, its metrics, its lineage and its promotion decisions."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ensign.backend import Backend, open_backend
from ensign.records import ArtifactRef, MetricPoint, PromotionDecision, Run

__all__ = ["RunClient"]


class RunClient:
    """Read access to one run.

    Args:
        run_uuid: The run's id.
        tracking_uri: Where metadata lives; else ``ENSIGN_TRACKING_URI``, else ``./.ensign``.
    """

    def __init__(self, run_uuid: str, tracking_uri: str | os.PathLike[str] | None = None) -> None:
        self.run_uuid = run_uuid
        self.backend: Backend = open_backend(tracking_uri)

    def __repr__(self) -> str:
        return f"RunClient({self.run_uuid!r})"

    def close(self) -> None:
        """Release the client's connections."""
        self.backend.close()

    def __enter__(self) -> RunClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get_run(self) -> Run:
        """Return the run: status, params, tags, environment, times.

        Raises:
            RunNotFound: when no run has this id.
        """
        return self.backend.registry.get_run(self.run_uuid)

    def get_metrics(self, names: Sequence[str] | None = None) -> dict[str, list[MetricPoint]]:
        """Return ``{name: [MetricPoint, ...]}`` in step order."""
        return self.backend.registry.get_metrics(self.run_uuid, names)

    def get_artifacts_lineage(self) -> list[ArtifactRef]:
        """Return every lineage ref of the run, inputs first."""
        return self.backend.registry.list_refs(self.run_uuid)

    def get_promotions(self) -> list[PromotionDecision]:
        """Return every promotion decision of the run with its reasons, oldest first."""
        return self.backend.registry.list_decisions(self.run_uuid)
