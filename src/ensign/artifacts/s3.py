"""The artifact helper of an S3 (or S3-compatible) bucket: multipart uploads, SigV4 URLs."""

from __future__ import annotations

import os
from typing import Any

import botocore  # type: ignore[import-untyped]  # noqa: F401  (missing -> install hint)
import s3fs  # noqa: F401  (imported here so that the registry can name the extra)

from ensign.artifacts.base import DEFAULT_EXPIRES_IN, ArtifactHelper
from ensign.artifacts.configs import S3Config
from ensign.errors import (
    ConfigurationError,
    InvalidArtifactArgument,
    NoDefaultConfig,
    ProviderSpecificException,
)
from ensign.storage.hashing import Progress
from ensign.storage.providers import open_filesystem
from ensign.storage.s3 import S3Presigner, S3Transfer, split_s3_uri

__all__ = ["S3ArtifactHelper"]


class S3ArtifactHelper(ArtifactHelper):
    """Uploads to ``s3://<bucket>/<prefix>/artifacts/<user>/<date>/`` and presigns GETs.

    Uploads go as multipart with bounded concurrency and memory for large files; the
    object appears only once every byte is sent and the file did not change meanwhile.
    """

    config_class = S3Config

    def __init__(self, config: S3Config) -> None:
        super().__init__(config)
        if config.bucket is None:
            raise NoDefaultConfig("bucket", "S3Config")
        self.bucket = config.bucket
        self.prefix = (config.prefix or "").strip("/")
        options: dict[str, Any] = dict(config.storage_options or {})
        if config.endpoint_url:
            options.setdefault("endpoint_url", config.endpoint_url)
        if config.region:
            client = dict(options.get("client_kwargs") or {})
            client.setdefault("region_name", config.region)
            options["client_kwargs"] = client
        self.fs, _ = open_filesystem(f"s3://{self.bucket}", options)
        self.transfer = S3Transfer(self.fs)
        self._presigner: S3Presigner | None = None

    def __repr__(self) -> str:
        where = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"S3ArtifactHelper('s3://{where}')"

    @property
    def presigner(self) -> S3Presigner:
        """The SigV4 signer, built from the same credentials and endpoint as uploads."""
        if self._presigner is None:
            self._presigner = S3Presigner.for_filesystem(self.fs)
        return self._presigner

    def object_key(self, object_name: str, **kwargs: Any) -> str:
        """Return ``<prefix>/artifacts/<user>/<YYYY/MM/DD>/<object_name>``."""
        key = super().object_key(object_name, **kwargs)
        return f"{self.prefix}/{key}" if self.prefix else key

    def upload_file(
        self,
        path: str | os.PathLike[str],
        object_name: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> str:
        """Upload a file and return its ``s3://bucket/key`` URI (see the base class)."""
        source = self._source(path)
        key = self.object_key(object_name or source.name)
        st = os.stat(source)
        try:
            self.transfer.upload(
                source, self.bucket, key, st=st, exclusive=False, progress=progress
            )
        except ConfigurationError as exc:
            raise ProviderSpecificException(f"S3 upload of {source} failed: {exc}") from exc
        except OSError as exc:
            raise ProviderSpecificException(
                f"S3 upload of {source} to s3://{self.bucket}/{key} failed: {exc}"
            ) from exc
        return f"s3://{self.bucket}/{key}"

    def get_presigned_url(
        self, storage_uri: str, expires_in_seconds: int = DEFAULT_EXPIRES_IN
    ) -> str:
        """Return a SigV4-presigned ``GET`` URL for an object of the bucket (see the base class)."""
        seconds = self._check_expiry(expires_in_seconds)
        if not isinstance(storage_uri, str):
            raise InvalidArtifactArgument(f"a storage URI must be a string, got {storage_uri!r}")
        bucket, key = split_s3_uri(storage_uri)
        if bucket != self.bucket:
            raise InvalidArtifactArgument(
                f"storage URI {storage_uri!r} is not in this provider's bucket {self.bucket!r}"
            )
        if not key:
            raise InvalidArtifactArgument(f"storage URI {storage_uri!r} names no object")
        try:
            return self.presigner.presign_get(bucket, key, seconds)
        except ConfigurationError as exc:
            raise ProviderSpecificException(str(exc)) from exc
