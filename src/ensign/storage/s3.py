"""S3 specifics: URIs, presigned URLs (SigV4) and the transfers of :mod:`.s3transfer`.

Presigned URLs are signed with ``s3v4`` explicitly, by a botocore client built from the
same settings as the store's s3fs filesystem (its ``key``/``secret``/``endpoint_url``/
``client_kwargs``, else the standard places: ``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``,
``AWS_PROFILE``, ``~/.aws``).  A URL lives at most 7 days, the SigV4 limit.  A POST
upload carries a policy that pins the exact key and bounds the body's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ensign.errors import ConfigurationError
from ensign.errors import InvalidArtifactArgument as InvalidArgument
from ensign.storage.s3transfer import (
    CONCURRENCY,
    MIN_PART_SIZE,
    PART_SIZE,
    RANGE_SIZE,
    S3Transfer,
    error_code,
)
from ensign.storage.signing import check_expires_in

__all__ = [
    "CONCURRENCY",
    "MIN_PART_SIZE",
    "PART_SIZE",
    "RANGE_SIZE",
    "PresignedPost",
    "S3Presigner",
    "S3Transfer",
    "abort_stale_uploads",
    "error_code",
    "signing_client",
    "split_s3_uri",
]


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Return ``(bucket, key)`` of ``s3://bucket/key`` (the key may be empty).

    Raises:
        InvalidArtifactArgument: for a URI of another scheme or without a bucket.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() not in {"s3", "s3a"}:
        raise InvalidArgument(f"not an S3 URI (s3://bucket/key): {uri!r}")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise InvalidArgument(f"S3 URI {uri!r} names no bucket")
    return bucket, key


def abort_stale_uploads(
    fs: Any, root: str, grace_seconds: float, *, dry_run: bool = False
) -> list[str]:
    """Abort multipart uploads under ``root`` begun more than ``grace_seconds`` ago.

    A process killed during an upload leaves its parts on S3, invisible but billed; an
    upload younger than the grace may still be running.  Returns
    ``s3://bucket/key?uploadId=...`` of each one aborted (or that would be, on a dry run).
    """
    import time

    bucket, _, prefix = root.partition("/")
    now = time.time()
    stale: list[tuple[str, str]] = []
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{prefix}/" if prefix else ""}
    while True:
        try:
            answer = fs.call_s3("list_multipart_uploads", **request)
        except FileNotFoundError:  # no bucket, nothing to collect
            return []
        for upload in answer.get("Uploads", []):
            if now - upload["Initiated"].timestamp() >= grace_seconds:
                stale.append((upload["Key"], upload["UploadId"]))
        if not answer.get("IsTruncated"):
            break
        request["KeyMarker"] = answer.get("NextKeyMarker")
        request["UploadIdMarker"] = answer.get("NextUploadIdMarker")
    if not dry_run:
        for key, upload_id in stale:
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    return [f"s3://{bucket}/{key}?uploadId={upload_id}" for key, upload_id in stale]


# presigned URLs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PresignedPost:
    """A browser-style upload: POST ``fields`` then the file (field ``file``) to ``url``.

    Attributes:
        url: Where to POST.
        fields: Form fields to send before the file, the signed ``policy`` among them.
    """

    url: str
    fields: dict[str, str]


def signing_client(fs: Any) -> Any:
    """Return a botocore S3 client with s3v4 signatures, configured like ``fs``.

    Credentials, endpoint, region and profile come from the filesystem's own options when
    it has them, else from the standard places (``AWS_ACCESS_KEY_ID``,
    ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``~/.aws/...``) exactly as s3fs finds them.

    Raises:
        ConfigurationError: for an anonymous filesystem, which cannot sign.
    """
    import botocore.config  # type: ignore[import-untyped]
    import botocore.session  # type: ignore[import-untyped]

    if getattr(fs, "anon", False):
        raise ConfigurationError("an anonymous S3 store (anon=True) cannot sign URLs")
    session_options = dict(getattr(fs, "kwargs", None) or {})
    session = botocore.session.Session(profile=session_options.get("profile"))
    allowed = set(botocore.config.Config.OPTION_DEFAULTS)
    config_options = {
        k: v for k, v in (getattr(fs, "config_kwargs", None) or {}).items() if k in allowed
    }
    config_options["signature_version"] = "s3v4"
    client_options = dict(getattr(fs, "client_kwargs", None) or {})
    explicit = {
        "endpoint_url": getattr(fs, "endpoint_url", None),
        "aws_access_key_id": getattr(fs, "key", None),
        "aws_secret_access_key": getattr(fs, "secret", None),
        "aws_session_token": getattr(fs, "token", None),
    }
    for name, value in explicit.items():
        if value is not None:
            client_options.setdefault(name, value)
    return session.create_client(
        "s3", config=botocore.config.Config(**config_options), **client_options
    )


class S3Presigner:
    """Signs time-limited S3 URLs (SigV4, at most 7 days) for one store's credentials.

    Args:
        client: A botocore S3 client; see :func:`signing_client`.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def for_filesystem(cls, fs: Any) -> S3Presigner:
        """Return a presigner with the credentials and endpoint of an s3fs filesystem."""
        return cls(signing_client(fs))

    def presign_get(self, bucket: str, key: str, expires_in: int) -> str:
        """Return a URL that GETs ``bucket/key`` for ``expires_in`` seconds (1..604800).

        Raises:
            InvalidArtifactArgument: for an expiry out of range or an empty key.
        """
        return self._presign("get_object", bucket, key, expires_in)

    def presign_put(self, bucket: str, key: str, expires_in: int) -> str:
        """Return a URL that PUTs ``bucket/key`` for ``expires_in`` seconds (1..604800)."""
        return self._presign("put_object", bucket, key, expires_in)

    def _presign(self, method: str, bucket: str, key: str, expires_in: int) -> str:
        seconds = check_expires_in(expires_in)
        _check_key(key)
        url: str = self.client.generate_presigned_url(
            method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
        )
        return url

    def presign_post(
        self,
        bucket: str,
        key: str,
        expires_in: int,
        *,
        max_length: int,
        min_length: int = 0,
    ) -> PresignedPost:
        """Return a POST upload whose policy pins ``key`` and bounds the body's length.

        The policy's conditions are the bucket, the exact key (never a prefix) and
        ``["content-length-range", min_length, max_length]``; it expires with the URL.

        Raises:
            InvalidArtifactArgument: an expiry out of range, a key with ``${``, or lengths
                that are negative or inverted.
        """
        seconds = check_expires_in(expires_in)
        _check_key(key)
        if "${" in key:
            raise InvalidArgument(f"a POST key must be literal, got {key!r}")
        if min_length < 0 or max_length < min_length:
            raise InvalidArgument(
                f"content length range must satisfy 0 <= min <= max, got {min_length}..{max_length}"
            )
        answer = self.client.generate_presigned_post(
            Bucket=bucket,
            Key=key,
            Conditions=[["content-length-range", min_length, max_length]],
            ExpiresIn=seconds,
        )
        return PresignedPost(str(answer["url"]), {k: str(v) for k, v in answer["fields"].items()})


def _check_key(key: str) -> None:
    if not key:
        raise InvalidArgument("cannot sign a URL for an empty key")
