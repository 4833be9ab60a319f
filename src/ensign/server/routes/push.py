"""The push API under ``/v1`` (the flow of the openlayer SDK's ``push``).

``POST /v1/storage/presigned-url?objectName=NAME`` answers ``{url, fields, storageUri}``:
for an S3 store a real presigned POST whose policy pins a fresh key and bounds the length;
for any other store the server's own signed ``POST /v1/storage/uploads/<id>/<name>``,
which takes the same multipart form (``fields`` first, ``file`` last) and streams the
file into the store.  ``POST /v1/projects/{id}/versions`` commits an uploaded bundle
(``{commit: {message}, storageUri}``, plus an optional ``ensign`` promotion) and queues its
evaluation; ``GET /v1/versions/{id}`` and ``GET /v1/versions/{id}/results`` report it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ensign.errors import Conflict, Forbidden, InvalidRequest, NotFound, PayloadTooLarge
from ensign.promotion.spec import Promotion
from ensign.records import parse_kind
from ensign.registry.sql import pushes as push_ops
from ensign.registry.sql.engine import write_transaction
from ensign.registry.sql.tokens import TokenRecord
from ensign.server.auth import Access, Token, server_state
from ensign.server.evaluation import bundle_path, new_upload, upload_path
from ensign.server.idempotency import NativeRoute, access_of
from ensign.storage.blobstore import BlobStore
from ensign.storage.hashing import CHUNK_SIZE
from ensign.storage.providers import is_s3, protocol_of

__all__ = ["UPLOAD_EXPIRES_IN", "router", "version_json"]

#: Seconds an upload URL stays valid.
UPLOAD_EXPIRES_IN = 3600

router = APIRouter(prefix="/v1", tags=["push"], route_class=NativeRoute)


class CommitFields(BaseModel):
    """The ``commit`` of a new version."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=100_000)
    # Sent by the openlayer SDK ("cli"); recorded nowhere.
    source: str | None = None
    git_commit_ref: str | None = Field(default=None, alias="gitCommitRef")
    git_commit_sha: str | int | None = Field(default=None, alias="gitCommitSha")
    git_commit_url: str | None = Field(default=None, alias="gitCommitUrl")


class EnsignOptions(BaseModel):
    """ensign's extension of a commit: promote the version when a condition holds.

    ``when`` is a promotion condition on the push run's metrics (``goals_all_passing == 1``,
    ``goal/Accuracy >= 0.9``); ``stage`` the stage the version goes to when it holds.
    """

    model_config = ConfigDict(extra="forbid")

    when: str | None = Field(default=None, max_length=10_000)
    stage: str | None = None
    kind: Literal["artifact", "model"] = "artifact"


class VersionBody(BaseModel):
    """``POST /v1/projects/{id}/versions``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    commit: CommitFields
    storage_uri: str = Field(alias="storageUri", min_length=1, max_length=4096)
    archived: bool | None = None
    deployment_status: str | None = Field(default=None, alias="deploymentStatus")
    ensign: EnsignOptions | None = None


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


# --- uploads -------------------------------------------------------------------------------


@router.post("/storage/presigned-url")
def presigned_url(
    request: Request,
    token: Token,
    object_name: Annotated[str, Query(alias="objectName")] = "bundle.tar",
) -> dict[str, Any]:
    """Answer where to upload a bundle: ``{url, fields, storageUri}`` (needs ``write``)."""
    Access.require_role(token, "write")
    state = server_state(request)
    store = state.backend.blob_store
    upload_id, storage_uri, path = new_upload(store, object_name)
    if is_s3(store.uri):
        bucket, _, key = path.partition("/")
        post = state.presigners.get(store).presign_post(
            bucket, key, UPLOAD_EXPIRES_IN, max_length=state.settings.max_bundle_bytes
        )
        return {"url": post.url, "fields": post.fields, "storageUri": storage_uri}
    name = path.rsplit("/", 1)[1]
    url = state.signer.sign_url(
        f"{_base_url(request)}/v1/storage/uploads",
        "POST",
        f"{upload_id}/{name}",
        expires_in=UPLOAD_EXPIRES_IN,
    )
    return {"url": url, "fields": {}, "storageUri": storage_uri}


@router.post("/storage/uploads/{upload_id}/{name}", status_code=204)
async def upload(request: Request, upload_id: str, name: str) -> Response:
    """Receive a bundle at a URL the server signed (multipart form, ``file`` last).

    The file part is spooled to disk while the form is read, then streamed into the store;
    a bundle over the size limit is refused with 413, a bad or expired signature with 403.
    """
    state = server_state(request)
    refusal = state.signer.check_query("POST", f"{upload_id}/{name}", request.query_params)
    if refusal is not None:
        raise Forbidden(f"this upload URL is refused ({refusal}); ask for a new one")
    store = state.backend.blob_store
    path = upload_path(store, upload_id, name)
    if store.fs.exists(path):
        raise Conflict("a bundle was already uploaded to this URL; ask for a new one")
    limit = state.settings.max_bundle_bytes
    async with request.form(max_files=1, max_fields=100) as form:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise InvalidRequest("the form has no file part named 'file' (send it last)")
        part.file.seek(0, os.SEEK_END)
        size = part.file.tell()
        if size > limit:
            raise PayloadTooLarge(
                f"the bundle has {size} bytes, more than this server's limit of {limit}", limit
            )
        part.file.seek(0)
        await run_in_threadpool(_store_upload, store, path, part)
    return Response(status_code=204)


def _store_upload(store: BlobStore, path: str, part: UploadFile) -> None:
    """Copy the spooled file into the store; it appears at ``path`` only when complete."""
    if protocol_of(store.uri) in {"file", "local"}:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{uuid.uuid4().hex[:8]}.part"
        try:
            with open(partial, "wb") as writer:
                shutil.copyfileobj(part.file, writer, CHUNK_SIZE)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        return
    with store.fs.open(path, "wb") as writer:
        shutil.copyfileobj(part.file, writer, CHUNK_SIZE)


# --- versions ------------------------------------------------------------------------------


def version_json(push: push_ops.Push, base_url: str) -> dict[str, Any]:
    """Return a push as the push API's version object."""
    extras: dict[str, Any] = {
        "kind": push.options.get("kind", "artifact"),
        "version": push.version_name,
        "runId": push.run_uuid,
        "project": push.project,
    }
    if push.options.get("when") is not None or push.options.get("stage") is not None:
        extras["when"] = push.options.get("when")
        extras["stage"] = push.options.get("stage")
        extras["promotion"] = push.options.get("decision")
    return {
        "id": push.id,
        "projectId": push.project_id,
        "status": push.status,
        "statusMessage": push.status_message,
        "passingGoalCount": push.passing,
        "failingGoalCount": push.failing,
        "totalGoalCount": push.total,
        "dateCreated": _iso(push.created_at),
        "dateUpdated": _iso(push.updated_at),
        "dateArchived": None,
        "archived": False,
        "commit": {
            "id": push.id,
            "authorId": push.author_id or "",
            "message": push.message,
            "storageUri": push.storage_uri,
            "fileSize": push.file_size,
            "dateCreated": _iso(push.created_at),
            "mlModelId": None,
            "trainingDatasetId": None,
            "validationDatasetId": None,
        },
        "links": {"app": f"{base_url}/v1/versions/{push.id}"},
        "ensign": extras,
    }


def _options(body: VersionBody) -> dict[str, Any]:
    if body.ensign is None:
        return {"kind": "artifact"}
    options = body.ensign
    Promotion(when=options.when, stage=options.stage)  # InvalidCondition / InvalidStage: 400
    return {"kind": parse_kind(options.kind).value, "when": options.when, "stage": options.stage}


@router.post("/projects/{project:path}/versions", status_code=201)
def create_version(
    request: Request, project: str, body: VersionBody, token: Token
) -> dict[str, Any]:
    """Commit an uploaded bundle as a new version of a project and queue its evaluation."""
    access_of(request).require_project(token, project, "write")
    state = server_state(request)
    options = _options(body)
    store = state.backend.blob_store
    path = bundle_path(store, body.storage_uri)
    try:
        info = store.fs.info(path)
    except FileNotFoundError:
        raise NotFound(
            f"nothing was uploaded to storageUri {body.storage_uri!r}: upload the bundle to "
            "the url of POST /v1/storage/presigned-url first"
        ) from None
    size = info.get("size")
    with write_transaction(state.registry.engine) as conn:
        push, _job = push_ops.create_push(
            conn,
            project,
            message=body.commit.message,
            storage_uri=body.storage_uri,
            file_size=int(size) if size is not None else None,
            options=options,
            author_id=token.id,
        )
    return version_json(push, _base_url(request))


def _push_for(request: Request, token: TokenRecord, version_id: str) -> push_ops.Push:
    state = server_state(request)
    with state.registry.engine.connect() as conn:
        push = push_ops.get_push(conn, version_id)
    access_of(request).require_project(token, push.project_id, "read")
    return push


@router.get("/versions/{version_id}")
def get_version(request: Request, version_id: str, token: Token) -> dict[str, Any]:
    """Return a version (a push) with its status and goal counts."""
    return version_json(_push_for(request, token, version_id), _base_url(request))


_EXPECTED: dict[str, tuple[bool, bool]] = {
    ">": (True, False),
    ">=": (True, False),
    "<": (False, True),
    "<=": (False, True),
    "==": (True, True),
    "is": (True, True),
}


def result_json(push: push_ops.Push, index: int, result: dict[str, Any]) -> dict[str, Any]:
    """Return one goal result as an item of ``GET /v1/versions/{id}/results``."""
    goal_id = hashlib.sha256(f"{push.id}/{result['name']}".encode()).hexdigest()[:32]
    lower, upper = _EXPECTED.get(str(result.get("operator")), (False, False))
    threshold = result.get("threshold")
    thresholds = result.get("thresholds") or [
        {
            "measurement": result.get("measurement"),
            "operator": result.get("operator"),
            "value": threshold,
        }
    ]
    return {
        "id": f"{push.id}-{index}",
        "projectVersionId": push.id,
        "goalId": goal_id,
        "dateCreated": _iso(push.created_at),
        "dateUpdated": _iso(push.updated_at),
        "status": result.get("status"),
        "statusMessage": result.get("message"),
        "expectedValues": [
            {
                "measurement": result.get("measurement"),
                "lowerThreshold": threshold if lower else None,
                "upperThreshold": threshold if upper else None,
            }
        ],
        "goal": {
            "id": goal_id,
            "name": result["name"],
            "number": index + 1,
            "type": result.get("type") or "performance",
            "subtype": result.get("subtype") or "metricThreshold",
            "thresholds": thresholds,
            "commentCount": 0,
            "suggested": False,
            "dateCreated": _iso(push.created_at),
            "dateUpdated": _iso(push.updated_at),
            "originProjectVersionId": push.id,
        },
        "measurement": result.get("measurement"),
        "measuredValue": result.get("value"),
        "dataset": result.get("dataset"),
    }


@router.get("/versions/{version_id}/results")
def get_results(
    request: Request,
    version_id: str,
    token: Token,
    status: Annotated[str | None, Query()] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int | None, Query(alias="perPage", ge=1, le=1000)] = None,
) -> dict[str, Any]:
    """Return one item per goal of a version: its status, thresholds and measured value."""
    push = _push_for(request, token, version_id)
    items = [result_json(push, i, r) for i, r in enumerate(push.results)]
    if status is not None:
        items = [item for item in items if item["status"] == status]
    if per_page is not None:
        items = items[(page - 1) * per_page : page * per_page]
    return {"items": items}
