"""Blobs of the native API: which ones a store lacks, direct uploads and downloads.

Clients never hold store credentials: the server hands out URLs (DESIGN §4.8).  For an S3
store they are presigned S3 URLs for the blob's final key; a ``PUT`` URL signs the
sha256 of the bytes (``x-amz-checksum-sha256``, which the client must send), so S3 itself
refuses other bytes.  For any other store (a folder, ``memory://``, ...) they point at the
server's own endpoints below, signed with the server's HMAC key
(``X-Ensign-Expires``/``X-Ensign-Signature``); a tampered or expired URL is refused with
403.  Those two endpoints take no bearer token: the signature is the permission.

=======  =================================  ===========================================
method   path                               what (role)
=======  =================================  ===========================================
GET      ``/api/v1/blobs/store``            ``{uri, uploads}``: the store new bytes go
                                            to (any token)
POST     ``/api/v1/blobs/missing``          ``{digests, store_uri?, expires_in?,
                                            uploads?}`` -> ``{missing, uploads}``: the
                                            digests the store lacks and an upload target
                                            ``{method, url, headers}`` for each (a
                                            ``write`` token)
POST     ``/api/v1/blobs/downloads``        the same body -> ``{downloads, missing}``
                                            (any token)
GET      ``/api/v1/blobs/referenced``       every digest a ref or version names (global
                                            ``admin``)
PUT      ``/api/v1/blobs/{digest}``         signed upload: the body is streamed into a
                                            temporary object while it is hashed, and
                                            published only when it hashes to
                                            ``digest`` (else 422, nothing published)
GET      ``/api/v1/blobs/{digest}``         signed download, streamed
=======  =================================  ===========================================

Uploads go only to the server's own store; reads may name another store that a ref or
version of the registry already names (``store_uri``), never an arbitrary URL.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import sqlalchemy as sa
from fastapi import Response
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ensign import jsonio
from ensign.errors import ArtifactNotFound, DigestMismatch, Forbidden, InvalidRequest
from ensign.registry.sql.schema import refs, runs, versions
from ensign.registry.sql.tokens import TokenRecord
from ensign.server.auth import Access, Token, server_state
from ensign.server.idempotency import WireResponse, access_of, native_router
from ensign.server.state import ServerState
from ensign.storage.blobstore import BlobStore
from ensign.storage.providers import is_s3, protocol_of
from ensign.storage.signing import EXPIRES_PARAM, SIGNATURE_PARAM, check_expires_in

__all__ = ["BLOB_PATH", "router", "served_store"]

#: Where the server serves the blobs of a store it signs URLs for itself.
BLOB_PATH = "/api/v1/blobs"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MAX_DIGESTS = 10_000
_CHUNK = 1024 * 1024  # bytes written to the store at a time
_STORE_PARAM = "store"

router = native_router("blobs")


class DigestsBody(BaseModel):
    """The body of ``POST /api/v1/blobs/missing`` and ``/downloads``."""

    model_config = ConfigDict(extra="forbid")
    digests: list[str] = Field(max_length=_MAX_DIGESTS)
    store_uri: str | None = None
    expires_in: int = 3600
    uploads: bool = True


# stores -----------------------------------------------------------------------------------


def _own_store(state: ServerState) -> BlobStore:
    return state.backend.blob_store


def _named_by_registry(state: ServerState, uri: str) -> bool:
    with state.registry.engine.connect() as conn:
        for table in (versions, refs):
            found = conn.execute(
                sa.select(table.c.store_uri).where(table.c.store_uri == uri).limit(1)
            ).first()
            if found is not None:
                return True
    return False


def served_store(state: ServerState, uri: str | None, *, upload: bool = False) -> BlobStore:
    """Return the store ``uri`` names, if the server serves it (its own when ``None``).

    Raises:
        Forbidden: an upload to another store, or a store no ref or version names.
    """
    own = _own_store(state)
    if uri is None or uri.rstrip("/") == own.uri:
        return own
    if upload:
        raise Forbidden(f"uploads go to the server's store {own.uri}, not to {uri}")
    if not _named_by_registry(state, uri):
        raise Forbidden(f"the server does not serve the store {uri}")
    store = state.backend.store_for(uri)
    assert isinstance(store, BlobStore)
    return store


def _check_digests(digests: list[str]) -> list[str]:
    for digest in digests:
        if not _DIGEST.fullmatch(digest):
            raise InvalidRequest(f"digests: not a sha256 digest (64 hex characters): {digest!r}")
    return list(dict.fromkeys(digests))


# URLs -------------------------------------------------------------------------------------


def _signed_key(digest: str, store: BlobStore, own: BlobStore) -> str:
    return f"blobs/{digest}" if store is own else f"blobs/{digest}@{store.uri}"


def _server_url(request: Request, method: str, digest: str, store: BlobStore, expires: int) -> str:
    state = server_state(request)
    own = _own_store(state)
    expires_at = int(time.time()) + expires
    query = {
        EXPIRES_PARAM: str(expires_at),
        SIGNATURE_PARAM: state.signer.sign(method, _signed_key(digest, store, own), expires_at),
    }
    if store is not own:
        query[_STORE_PARAM] = store.uri
    base = str(request.base_url).rstrip("/")
    from urllib.parse import urlencode

    return f"{base}{BLOB_PATH}/{digest}?{urlencode(query)}"


def _s3_place(store: BlobStore, digest: str) -> tuple[str, str]:
    bucket, _, key = store.blob_path(digest).partition("/")
    return bucket, key


def _upload_target(request: Request, store: BlobStore, digest: str, expires: int) -> dict[str, Any]:
    if not is_s3(store.uri):
        url = _server_url(request, "PUT", digest, store, expires)
        return {"method": "PUT", "url": url, "headers": {}}
    checksum = base64.b64encode(bytes.fromhex(digest)).decode()
    bucket, key = _s3_place(store, digest)
    client = server_state(request).presigners.get(store).client
    url = client.generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": key, "ChecksumSHA256": checksum},
        ExpiresIn=expires,
    )
    return {"method": "PUT", "url": url, "headers": {"x-amz-checksum-sha256": checksum}}


def _download_target(
    request: Request, store: BlobStore, digest: str, expires: int
) -> dict[str, Any]:
    if not is_s3(store.uri):
        return {"method": "GET", "url": _server_url(request, "GET", digest, store, expires)}
    bucket, key = _s3_place(store, digest)
    url = server_state(request).presigners.get(store).presign_get(bucket, key, expires)
    return {"method": "GET", "url": url}


# routes with a bearer token ---------------------------------------------------------------


@router.get(f"{BLOB_PATH}/store")
def store_info(request: Request, token: Token) -> WireResponse:
    """Return the store new bytes go to and how uploads reach it (``s3`` or ``server``)."""
    store = _own_store(server_state(request))
    return WireResponse({"uri": store.uri, "uploads": "s3" if is_s3(store.uri) else "server"})


@router.post(f"{BLOB_PATH}/missing")
def missing_blobs(request: Request, token: Token, body: DigestsBody) -> WireResponse:
    """Return the digests the store lacks and, unless ``uploads`` is false, where to PUT each."""
    Access.require_role(token, "write")
    expires = check_expires_in(body.expires_in)
    digests = _check_digests(body.digests)
    store = served_store(server_state(request), body.store_uri, upload=body.uploads)
    lacking = sorted(store.missing(digests))
    uploads = (
        {d: _upload_target(request, store, d, expires) for d in lacking} if body.uploads else {}
    )
    return WireResponse({"missing": lacking, "uploads": uploads})


#: Up to this many digests are checked one by one; more, in one pass over the manifests.
_FEW = 16


def _check_readable(state: ServerState, token: TokenRecord, digests: list[str]) -> None:
    """Let a project's token read only bytes its project's versions or lineage name.

    Raises:
        Forbidden: naming a digest no version or ref of the token's project names.
    """
    if token.project_id is None or not digests:
        return
    project = token.project_id
    versioned = sa.select(versions.c.manifest).where(versions.c.project_id == project)
    logged = (
        sa.select(refs.c.manifest)
        .join(runs, runs.c.uuid == refs.c.run_uuid)
        .where(runs.c.project_id == project)
    )
    with state.registry.engine.connect() as conn:
        if len(digests) > _FEW:  # one pass over the project's manifests
            named: set[str] = set()
            for query in (versioned, logged):
                for text in conn.execute(query).scalars():
                    named.update(entry["digest"] for entry in jsonio.loads(text).values())
            foreign = [d for d in digests if d not in named]
        else:  # a lookup or two per digest (a pull asks for one file at a time)
            foreign = [
                d
                for d in digests
                if all(
                    conn.execute(
                        query.where(query.selected_columns[0].contains(d, autoescape=True)).limit(1)
                    ).first()
                    is None
                    for query in (versioned, logged)
                )
            ]
    if foreign:
        raise Forbidden(
            f"this token covers the project {token.project_key!r}, whose versions and "
            f"runs name no file with sha256 {foreign[0]}"
        )


@router.post(f"{BLOB_PATH}/downloads")
def blob_downloads(request: Request, token: Token, body: DigestsBody) -> WireResponse:
    """Return a download URL for each digest the store holds, and those it lacks."""
    expires = check_expires_in(body.expires_in)
    digests = _check_digests(body.digests)
    state = server_state(request)
    store = served_store(state, body.store_uri)
    lacking = store.missing(digests)
    _check_readable(state, token, [d for d in digests if d not in lacking])
    downloads = {
        d: _download_target(request, store, d, expires) for d in digests if d not in lacking
    }
    return WireResponse({"downloads": downloads, "missing": sorted(lacking)})


@router.get(f"{BLOB_PATH}/referenced")
def referenced_digests(request: Request, token: Token) -> WireResponse:
    """Return every blob digest a ref or version still names."""
    access_of(request).require_global(token, "admin")
    digests = server_state(request).registry.referenced_digests()
    return WireResponse({"digests": sorted(digests)})


# signed routes: the URL's signature is the permission -----------------------------------


def _signed_store(request: Request, method: str, digest: str) -> BlobStore:
    """Return the store a signed URL names, refusing a bad, tampered or expired one."""
    state = server_state(request)
    if not _DIGEST.fullmatch(digest):
        raise InvalidRequest(f"not a sha256 digest (64 hex characters): {digest!r}")
    own = _own_store(state)
    named = request.query_params.get(_STORE_PARAM)
    key = f"blobs/{digest}" if named is None else f"blobs/{digest}@{named}"
    refusal = state.signer.check_query(method, key, request.query_params)
    if refusal is not None:
        raise Forbidden(f"the signed URL is refused: {refusal}")
    if named is None:
        return own
    store = state.backend.store_for(named)
    assert isinstance(store, BlobStore)
    return store


def _publish(store: BlobStore, tmp: str, digest: str) -> bool:
    final = store.blob_path(digest)
    if store.fs.exists(final):  # the same bytes were published first; never rewritten
        store.fs.rm(tmp)
        return False
    store.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
    store.fs.mv(tmp, final)
    return True


def _remove_quietly(store: BlobStore, path: str) -> None:
    try:
        if store.fs.exists(path):
            store.fs.rm(path)
    except OSError:
        pass  # a leftover under tmp/ is collected by ensign gc


async def receive_blob(store: BlobStore, digest: str, chunks: AsyncIterator[bytes]) -> int:
    """Stream ``chunks`` into a temporary object of ``store``, then publish it as ``digest``.

    At most about one :data:`_CHUNK` is held in memory; the bytes are hashed as they
    arrive.  Returns the size.

    Raises:
        DigestMismatch: the bytes hash to something else; nothing is published.
    """
    tmp = f"{store.root}/tmp/{uuid.uuid4().hex}.part"  # the store's layout: gc collects tmp/
    await run_in_threadpool(store.fs.makedirs, tmp.rsplit("/", 1)[0], exist_ok=True)
    writer = await run_in_threadpool(store.fs.open, tmp, "wb")
    hasher = hashlib.sha256()
    size = 0
    pending = bytearray()
    try:
        try:
            async for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                pending += chunk
                if len(pending) >= _CHUNK:
                    await run_in_threadpool(writer.write, bytes(pending))
                    pending.clear()
            if pending:
                await run_in_threadpool(writer.write, bytes(pending))
        finally:
            await run_in_threadpool(writer.close)
        actual = hasher.hexdigest()
        if actual != digest:
            raise DigestMismatch(f"the upload of sha256 {digest}", digest, actual)
        await run_in_threadpool(_publish, store, tmp, digest)
    except BaseException:
        await run_in_threadpool(_remove_quietly, store, tmp)
        raise
    return size


async def upload_blob(digest: str, request: Request) -> Response:
    """Receive a blob through a signed URL, streamed, published only if its digest matches."""
    store = _signed_store(request, "PUT", digest)
    size = await receive_blob(store, digest, request.stream())
    return WireResponse({"digest": digest, "size": size}, status_code=201)


def _chunks(store: BlobStore, path: str) -> Iterator[bytes]:
    with store.fs.open(path, "rb") as reader:
        while chunk := reader.read(_CHUNK):
            yield chunk


def download_blob(digest: str, request: Request) -> Response:
    """Send a blob through a signed URL, streamed from the store."""
    store = _signed_store(request, "GET", digest)
    if not store.has(digest):
        raise ArtifactNotFound(f"the store {store.uri} lacks the blob {digest}")
    path = store.blob_path(digest)
    if protocol_of(store.uri) in {"file", "local"}:
        return FileResponse(path, media_type="application/octet-stream")
    return StreamingResponse(_chunks(store, path), media_type="application/octet-stream")


# Streamed bodies must not pass through NativeRoute (an Idempotency-Key would buffer them).
router.add_api_route(
    BLOB_PATH + "/{digest}", upload_blob, methods=["PUT"], route_class_override=APIRoute
)
router.add_api_route(
    BLOB_PATH + "/{digest}", download_blob, methods=["GET"], route_class_override=APIRoute
)
