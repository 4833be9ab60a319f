"""The artifact helper of a local folder store; its URLs are signed by ensign (HMAC)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

from ensign.artifacts.base import DEFAULT_EXPIRES_IN, ArtifactHelper
from ensign.artifacts.configs import LocalConfig
from ensign.errors import IntegrityError, InvalidArtifactArgument, NoDefaultConfig
from ensign.storage.hashing import Progress
from ensign.storage.signing import HmacSigner, load_or_create_secret
from ensign.storage.transfer import copy_and_hash

__all__ = ["LocalArtifactHelper"]


def _folder(root: str) -> Path:
    if root.startswith("file://"):
        return Path(unquote(urlparse(root).path))
    if "://" in root:
        raise InvalidArtifactArgument(f"LocalConfig.root must be a folder, got {root!r}")
    return Path(root).expanduser().absolute()


class LocalArtifactHelper(ArtifactHelper):
    """Copies files into ``<root>/artifacts/<user>/<date>/`` and signs ``GET`` URLs for them.

    A signed URL is ``<base_url>/<key>?X-Ensign-Expires=...&X-Ensign-Signature=...``; the
    server (or anything holding the secret) checks it with
    :meth:`ensign.storage.signing.HmacSigner.check_query`.
    """

    config_class = LocalConfig

    def __init__(self, config: LocalConfig) -> None:
        super().__init__(config)
        if config.root is None or config.signing_key is None:
            raise NoDefaultConfig("root" if config.root is None else "signing_key", "LocalConfig")
        self.root = _folder(config.root)
        self.base_url = (config.base_url or self.root.as_uri()).rstrip("/")
        self.signer = HmacSigner(load_or_create_secret(config.signing_key))

    def __repr__(self) -> str:
        return f"LocalArtifactHelper({str(self.root)!r})"

    def upload_file(
        self,
        path: str | os.PathLike[str],
        object_name: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> str:
        """Copy a file under the folder and return its ``file://`` URI (see the base class)."""
        source = self._source(path)
        key = self.object_key(object_name or source.name)
        target = self.root.joinpath(*key.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            st = os.stat(source)
            with open(source, "rb") as reader, open(partial, "wb") as writer:
                _, size = copy_and_hash(reader, writer, progress)
            after = os.stat(source)
            if size != st.st_size or (after.st_size, after.st_mtime_ns) != (
                st.st_size,
                st.st_mtime_ns,
            ):
                raise IntegrityError(f"{source} changed while it was uploaded; nothing was stored")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target.as_uri()

    def key_of(self, storage_uri: str) -> str:
        """Return the key (path under the folder) of a ``file://`` URI this helper returned.

        Raises:
            InvalidArtifactArgument: a URI of another scheme or outside the folder.
        """
        if not isinstance(storage_uri, str) or not storage_uri.startswith("file://"):
            raise InvalidArtifactArgument(
                f"storage URI {storage_uri!r} is not a file:// URI of the folder {self.root}"
            )
        path = Path(unquote(urlparse(storage_uri).path))
        try:
            relative = path.relative_to(self.root)
        except ValueError:
            raise InvalidArtifactArgument(
                f"storage URI {storage_uri!r} is outside the folder {self.root}"
            ) from None
        if ".." in relative.parts or not relative.parts:
            raise InvalidArtifactArgument(
                f"storage URI {storage_uri!r} names no file in {self.root}"
            )
        return relative.as_posix()

    def get_presigned_url(
        self, storage_uri: str, expires_in_seconds: int = DEFAULT_EXPIRES_IN
    ) -> str:
        """Return an HMAC-signed ``GET`` URL for a stored file (see the base class)."""
        seconds = self._check_expiry(expires_in_seconds)
        key = self.key_of(storage_uri)
        return self.signer.sign_url(self.base_url, "GET", key, expires_in=seconds)
