"""The artifact helper of any other fsspec store (``gs://``, ``az://``, ``memory://``, ...)."""

from __future__ import annotations

import contextlib
import os
import uuid

from ensign.artifacts.base import DEFAULT_EXPIRES_IN, ArtifactHelper
from ensign.artifacts.configs import FsspecConfig
from ensign.errors import (
    IntegrityError,
    InvalidArtifactArgument,
    NoDefaultConfig,
    ProviderSpecificException,
    StoreNotAvailable,
    UnsupportedArtifactsType,
)
from ensign.storage.hashing import Progress
from ensign.storage.providers import open_filesystem, protocol_of
from ensign.storage.transfer import copy_and_hash

__all__ = ["FsspecArtifactHelper"]


class FsspecArtifactHelper(ArtifactHelper):
    """Writes files through fsspec; signs URLs where the filesystem can (``fs.sign``)."""

    config_class = FsspecConfig

    def __init__(self, config: FsspecConfig) -> None:
        super().__init__(config)
        if config.uri is None:
            raise NoDefaultConfig("uri", "FsspecConfig")
        self.uri = config.uri.rstrip("/")
        try:
            self.fs, self.root = open_filesystem(self.uri, config.storage_options)
        except StoreNotAvailable as exc:
            raise UnsupportedArtifactsType(config.type_id(), str(exc)) from exc

    def __repr__(self) -> str:
        return f"FsspecArtifactHelper({self.uri!r})"

    def upload_file(
        self,
        path: str | os.PathLike[str],
        object_name: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> str:
        """Write a file to the store and return its URL (see the base class)."""
        source = self._source(path)
        key = self.object_key(object_name or source.name)
        final = f"{self.root}/{key}"
        folder, _, name = final.rpartition("/")
        partial = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.part"
        try:
            self.fs.makedirs(folder, exist_ok=True)
            st = os.stat(source)
            with open(source, "rb") as reader, self.fs.open(partial, "wb") as writer:
                _, size = copy_and_hash(reader, writer, progress)
            after = os.stat(source)
            if size != st.st_size or (after.st_size, after.st_mtime_ns) != (
                st.st_size,
                st.st_mtime_ns,
            ):
                raise IntegrityError(f"{source} changed while it was uploaded; nothing was stored")
            self.fs.mv(partial, final)
        except OSError as exc:
            raise ProviderSpecificException(
                f"upload of {source} to {self.uri} failed: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                if self.fs.exists(partial):
                    self.fs.rm(partial)
        return f"{self.uri}/{key}"

    def get_presigned_url(
        self, storage_uri: str, expires_in_seconds: int = DEFAULT_EXPIRES_IN
    ) -> str:
        """Return the filesystem's own signed URL (see the base class).

        Raises:
            ProviderSpecificException: the filesystem cannot sign URLs (``memory://``).
        """
        seconds = self._check_expiry(expires_in_seconds)
        if not isinstance(storage_uri, str) or not storage_uri.startswith(self.uri + "/"):
            raise InvalidArtifactArgument(
                f"storage URI {storage_uri!r} is not an object of the store {self.uri}"
            )
        path = f"{self.root}/{storage_uri[len(self.uri) + 1 :]}"
        try:
            url: str = self.fs.sign(path, expiration=seconds)
        except NotImplementedError as exc:
            raise ProviderSpecificException(
                f"the {protocol_of(self.uri)}:// store {self.uri} cannot sign URLs"
            ) from exc
        return url
