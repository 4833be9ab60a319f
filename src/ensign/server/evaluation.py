"""Evaluating a push: the body of a ``push`` job, and where pushed bundles are kept.

A worker that holds a push's job marks the push ``running`` and creates a run for it,
streams the bundle from the store to a temporary folder, unpacks and evaluates it
(:func:`ensign.bundles.evaluate_archive`), and on a completed evaluation stores the
unpacked files as the run's ``bundle`` output and logs ``goals_passing``,
``goals_failing``, ``goals_total``, ``goals_all_passing`` and ``goal/<name>``.  The push's
optional promotion (``when``, ``stage``) is decided on those metrics with the promotion
code, and the version, the decision, the push's outcome and the job's completion are
written in one transaction that first checks the worker still holds the job, so a push
becomes at most one version even when a worker is presumed dead and its job retried.

Bundles are uploaded to ``<store>/pushes/<upload id>/<object name>``; a storage URI is
accepted only in that form (see :func:`bundle_path`).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ensign.backend import Backend
from ensign.bundles import Evaluation, evaluate_archive
from ensign.errors import EnsignError, InvalidRequest, UnknownMetric
from ensign.promotion.decide import decide
from ensign.promotion.register import manifest_of
from ensign.promotion.spec import Promotion
from ensign.records import PromotionDecision, RunStatus
from ensign.registry.base import MetricRow, RunBatch, VersionSpec
from ensign.registry.sql import SqlRegistry
from ensign.registry.sql import jobs as job_ops
from ensign.registry.sql import pushes as push_ops
from ensign.registry.sql import runs as run_ops
from ensign.registry.sql import versions as version_ops
from ensign.registry.sql.engine import write_transaction
from ensign.server.settings import ServerSettings
from ensign.storage.blobstore import BlobStore
from ensign.storage.hashing import CHUNK_SIZE
from ensign.storage.providers import protocol_of
from ensign.tracking.refs import RefRequest, store_ref

__all__ = [
    "BUNDLE_REF",
    "MAX_ATTEMPTS",
    "PUSHES_FOLDER",
    "WorkerContext",
    "bundle_path",
    "check_object_name",
    "collect_stale_uploads",
    "goal_metric",
    "new_upload",
    "run_push_job",
]

#: The folder of the store that uploaded bundles go to.
PUSHES_FOLDER = "pushes"
#: The name of the run output (and version artifact) holding a pushed bundle's files.
BUNDLE_REF = "bundle"
#: Claims of one push job after which it is given up (its workers kept dying).
MAX_ATTEMPTS = 3

_OBJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class WorkerContext:
    """What a worker needs: its settings and the store.

    Attributes:
        settings: Run scripts or not, the time limit, the bundle size limit, the lease.
        backend: The registry and the blob store.
        registry: The same registry, typed as SQL (jobs and pushes live there).
    """

    settings: ServerSettings
    backend: Backend
    registry: SqlRegistry


# --- where bundles are kept ----------------------------------------------------------------


def check_object_name(name: str) -> str:
    """Return ``name`` when it can name an uploaded bundle (``bundle.tar``).

    Raises:
        InvalidRequest: for an empty name, a path (``/``, ``..``), or other characters than
            letters, digits, ``.``, ``_`` and ``-``.
    """
    if not _OBJECT_NAME.fullmatch(name):
        raise InvalidRequest(
            f"objectName {name!r} is not a plain file name: use letters, digits, '.', '_' "
            "and '-' (at most 128, starting with a letter or digit; no '/' or '..')"
        )
    return name


def new_upload(store: BlobStore, object_name: str) -> tuple[str, str, str]:
    """Return ``(upload id, storage URI, path in the store's filesystem)`` of a fresh upload.

    Raises:
        InvalidRequest: for an object name that is not a plain file name.
    """
    name = check_object_name(object_name)
    upload_id = uuid.uuid4().hex
    relative = f"{PUSHES_FOLDER}/{upload_id}/{name}"
    return upload_id, f"{store.uri}/{relative}", f"{store.root}/{relative}"


def upload_path(store: BlobStore, upload_id: str, object_name: str) -> str:
    """Return the path in the store's filesystem of an upload.

    Raises:
        InvalidRequest: for an id or name the server never issues.
    """
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise InvalidRequest(f"{upload_id!r} is not an upload id")
    name = check_object_name(object_name)
    return f"{store.root}/{PUSHES_FOLDER}/{upload_id}/{name}"


def collect_stale_uploads(
    store: BlobStore, engine: sa.Engine, *, grace_seconds: float, dry_run: bool = False
) -> list[tuple[str, int]]:
    """Remove uploaded bundles older than the grace that no waiting push names.

    An evaluated bundle's archive is removed by its worker; what stays under ``pushes/`` is
    an upload that was never committed (or whose removal failed). Returns ``(storage URI,
    size)`` of each one removed (or that would be, on a dry run).
    """
    base = f"{store.root}/{PUSHES_FOLDER}"
    if not store.fs.exists(base):
        return []
    now = time.time()
    removed: list[tuple[str, int]] = []
    for path, info in store.fs.find(base, detail=True).items():
        uri = f"{store.uri}/{PUSHES_FOLDER}/{path[len(base) + 1 :]}"
        if store.age(info, now) < grace_seconds:
            continue
        with engine.connect() as conn:  # asked just before the removal: a commit may be new
            if uri in push_ops.waiting_storage_uris(conn, uri):
                continue
        removed.append((uri, int(info.get("size") or 0)))
        if not dry_run:
            store.fs.rm(path)
            parent = path.rsplit("/", 1)[0]
            if protocol_of(store.uri) in {"file", "local"} and not store.fs.ls(parent):
                store.fs.rmdir(parent)
    return removed


def bundle_path(store: BlobStore, storage_uri: str) -> str:
    """Return the path in the store of a bundle the server's upload URL received.

    Only URIs of the form the server issues are accepted, so a commit can never point the
    worker at another object of the store, let alone at a file of the server.

    Raises:
        InvalidRequest: for any other URI.
    """
    prefix = f"{store.uri}/{PUSHES_FOLDER}/"
    parts = storage_uri[len(prefix) :].split("/") if storage_uri.startswith(prefix) else []
    if (
        len(parts) != 2
        or not _UPLOAD_ID.fullmatch(parts[0])
        or not _OBJECT_NAME.fullmatch(parts[1])
    ):
        raise InvalidRequest(
            f"storageUri {storage_uri!r} was not issued by this server: use the storageUri "
            "that POST /v1/storage/presigned-url answered"
        )
    return upload_path(store, parts[0], parts[1])


def goal_metric(name: str) -> str:
    """Return the metric name of a goal's measured value, ``goal/<name>``.

    Runs of characters a promotion condition cannot name become ``_``.
    """
    slug = _METRIC_UNSAFE.sub("_", name).strip("_") or "goal"
    return f"goal/{slug}"


# --- the job -------------------------------------------------------------------------------


def run_push_job(context: WorkerContext, job: job_ops.Job) -> None:
    """Evaluate the push of a claimed ``push`` job and record the outcome.

    Everything is recorded only while the worker holds the job; a worker that lost it
    (its lease passed and another worker took over) writes nothing but blobs.
    """
    engine = context.registry.engine
    with engine.connect() as conn:
        push = push_ops.get_push(conn, str(job.payload["push"]))
    if push.status in ("completed", "failed"):
        with write_transaction(engine) as conn:
            job_ops.complete(conn, job)
        return
    if job.attempts > MAX_ATTEMPTS:
        message = (
            f"the evaluation was interrupted {job.attempts - 1} times (its worker stopped "
            "before it finished); giving up"
        )
        _finish(context, job, push, Evaluation.failed(message), None, [])
        return
    run_uuid = _start(context, job, push)
    if run_uuid is None:
        return
    with tempfile.TemporaryDirectory(prefix="ensign-push-") as tmp:
        archive = Path(tmp) / "bundle.tar"
        try:
            _download(context.backend.blob_store, push.storage_uri, archive)
        except (OSError, EnsignError) as error:
            evaluation = Evaluation.failed(f"the bundle could not be read from the store: {error}")
        else:
            evaluation = evaluate_archive(
                archive,
                Path(tmp) / "work",
                allow_run_scripts=context.settings.allow_run_scripts,
                time_limit=context.settings.script_time_limit,
                max_bytes=context.settings.max_bundle_bytes,
            )
        root = _bundle_root(Path(tmp) / "work")
        results = _results(evaluation, root)
        if evaluation.status != "completed" or root is None:
            _finish(context, job, push, evaluation, run_uuid, results)
            return
        _log_run(context, push, run_uuid, evaluation, root)
    _finish(context, job, push, evaluation, run_uuid, results)


def _start(context: WorkerContext, job: job_ops.Job, push: push_ops.Push) -> str | None:
    """Mark the push running with a fresh run; ``None`` when the worker lost the job."""
    with write_transaction(context.registry.engine) as conn:
        if not job_ops.holds(conn, job):
            return None
        if push.run_uuid is not None:  # an earlier attempt's run, whose worker stopped
            run_ops.set_run_status(conn, push.run_uuid, RunStatus.FAILED.value, True)
        run = run_ops.create_run(
            conn,
            push.project,
            name=f"push-{push.id[:8]}",
            description=push.message,
            tags=["push"],
            environment={},
        )
        attempt = f" (attempt {job.attempts})" if job.attempts > 1 else ""
        push_ops.start_push(conn, push.id, run.uuid, f"evaluating{attempt}")
        return run.uuid


def _download(store: BlobStore, storage_uri: str, target: Path) -> None:
    """Stream a pushed bundle from the store to a local file."""
    source = bundle_path(store, storage_uri)
    with store.fs.open(source, "rb") as reader, open(target, "wb") as writer:
        shutil.copyfileobj(reader, writer, CHUNK_SIZE)


def _bundle_root(workdir: Path) -> Path | None:
    """Return the unpacked bundle's root (the folder holding ``openlayer.json``), if any."""
    if not workdir.is_dir():
        return None
    for folder in sorted(workdir.iterdir()):
        if not folder.is_dir() or folder.is_symlink():
            continue
        if (folder / "openlayer.json").is_file():
            return folder
        inner = [p for p in folder.iterdir() if p.is_dir() and (p / "openlayer.json").is_file()]
        if len(inner) == 1:
            return inner[0]
    return None


def _results(evaluation: Evaluation, root: Path | None) -> list[dict[str, Any]]:
    """Return the goal results, with each goal's type, subtype and thresholds when known."""
    results: list[dict[str, Any]] = [r.to_dict() for r in evaluation.results]
    if root is None or not results:
        return results
    try:
        from ensign.bundles.config import load_config
        from ensign.bundles.goals import load_goals

        goals = {goal.name: goal for goal in load_goals(load_config(root))}
    except (EnsignError, OSError, ValueError):
        return results
    for result in results:
        goal = goals.get(result["name"])
        if goal is None:
            continue
        result["type"] = goal.type
        result["subtype"] = goal.subtype
        result["thresholds"] = [
            {
                "insightName": t.insight_name,
                "measurement": t.measurement,
                "operator": t.operator,
                "value": t.value,
            }
            for t in goal.thresholds
        ]
    return results


def _metrics(evaluation: Evaluation) -> dict[str, float]:
    values = {
        "goals_passing": float(evaluation.passing),
        "goals_failing": float(evaluation.failing),
        "goals_total": float(evaluation.total),
        "goals_all_passing": 1.0 if evaluation.failing == 0 else 0.0,
    }
    for result in evaluation.results:
        if result.value is None:
            continue
        name = goal_metric(result.name)
        suffix = 2
        while name in values:
            name = f"{goal_metric(result.name)}_{suffix}"
            suffix += 1
        values[name] = float(result.value)
    return values


def _log_run(
    context: WorkerContext,
    push: push_ops.Push,
    run_uuid: str,
    evaluation: Evaluation,
    root: Path,
) -> None:
    """Store the bundle's files as the run's output and log the goal metrics."""
    kind = str(push.options.get("kind") or "artifact")
    request = RefRequest(
        run=run_uuid,
        name=BUNDLE_REF,
        kind="model" if kind == "model" else "dir",
        path=str(root),
        digest=None,
        is_input=False,
        summary={"push": push.id, "message": push.message},
        upload=True,
        skip_hash=False,
    )
    ref = dataclasses.replace(store_ref(request, context.backend.store), uri=push.storage_uri)
    now = time.time()
    rows: list[MetricRow] = [(k, 0, v, now) for k, v in _metrics(evaluation).items()]
    context.registry.write_batch(
        RunBatch(
            run_uuid,
            metrics=rows,
            params={"push": push.id, "storage_uri": push.storage_uri},
            refs=[ref],
        )
    )


def _decision(
    context: WorkerContext, push: push_ops.Push, run_uuid: str, kind: str
) -> PromotionDecision | None:
    """Decide the push's promotion (``when``/``stage``) on the run's metrics, if it has one."""
    when = push.options.get("when")
    stage = push.options.get("stage")
    if when is None and stage is None:
        return None
    promotion = Promotion(when=when, stage=stage)
    try:
        return decide(context.registry, run_uuid, push.project, kind, promotion, dry_run=False)
    except UnknownMetric as error:
        return PromotionDecision(
            promoted=False,
            version=None,
            reasons=[str(error)],
            evaluated_at=datetime.now(timezone.utc),
            dry_run=False,
        )


def _finish(
    context: WorkerContext,
    job: job_ops.Job,
    push: push_ops.Push,
    evaluation: Evaluation,
    run_uuid: str | None,
    results: list[dict[str, Any]],
) -> None:
    """Write the outcome (and the version of a completed push) if the job is still held."""
    kind = str(push.options.get("kind") or "artifact")
    completed = evaluation.status == "completed" and run_uuid is not None
    decision = _decision(context, push, run_uuid, kind) if completed and run_uuid else None
    manifest: dict[str, dict[str, Any]] = {}
    store_uri: str | None = None
    if completed and run_uuid is not None:
        manifest, store_uri = manifest_of(context.registry.list_refs(run_uuid))
    with write_transaction(context.registry.engine) as conn:
        if not job_ops.holds(conn, job):
            return
        version_name = None
        if completed and run_uuid is not None:
            version_name = _create_version(
                conn, push, kind, run_uuid, evaluation, manifest, store_uri, decision
            )
        push_ops.finish_push(
            conn,
            push.id,
            status=evaluation.status,
            status_message=evaluation.status_message,
            passing=evaluation.passing,
            failing=evaluation.failing,
            total=evaluation.total,
            results=results,
            run_uuid=run_uuid,
            version_name=version_name,
            decision=_decision_json(decision),
        )
        if run_uuid is not None:
            status = RunStatus.SUCCEEDED if completed else RunStatus.FAILED
            run_ops.set_run_status(conn, run_uuid, status.value, True)
        job_ops.complete(conn, job)
    _discard_archive(context.backend.blob_store, push.storage_uri)


def _discard_archive(store: BlobStore, storage_uri: str) -> None:
    """Remove an evaluated bundle's archive: its files are blobs of the version now."""
    path = bundle_path(store, storage_uri)
    try:
        store.fs.rm(path)
        parent = path.rsplit("/", 1)[0]
        if protocol_of(store.uri) in {"file", "local"} and not store.fs.ls(parent):
            store.fs.rmdir(parent)
    except OSError:
        pass  # already gone (an earlier attempt's), or the store refused: nothing is lost


def _decision_json(decision: PromotionDecision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {"promoted": decision.promoted, "reasons": list(decision.reasons)}


def _create_version(
    conn: sa.Connection,
    push: push_ops.Push,
    kind: str,
    run_uuid: str,
    evaluation: Evaluation,
    manifest: dict[str, dict[str, Any]],
    store_uri: str | None,
    decision: PromotionDecision | None,
) -> str:
    stage = push.options.get("stage") if decision is not None and decision.promoted else None
    spec = VersionSpec(
        name=None,
        description=push.message,
        tags=["push"],
        content={"message": push.message, "push": push.id, "storageUri": push.storage_uri},
        run=run_uuid,
        artifacts=[BUNDLE_REF],
        manifest=manifest,
        store_uri=store_uri,
        stage=stage,
        stage_reason="Promotion" if stage else None,
        stage_message="; ".join(decision.reasons) if stage and decision else None,
        decision=decision,
    )
    version = version_ops.create_version(conn, push.project, kind, spec, False)
    push_ops.set_evaluation(conn, push.project_id, version.kind, version.name, evaluation.to_dict())
    return version.name
