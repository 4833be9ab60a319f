"""Remembers the digest of local files so that an unchanged file is not hashed again.

A file is unchanged when its resolved path, size, modification time (ns) and inode are
the same as when it was hashed.  The cache is a small SQLite file; losing it only costs
a re-hash.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from ensign.storage.hashing import sha256_file

__all__ = ["StatCache"]


class StatCache:
    """A persistent ``(path, size, mtime, inode) -> sha256`` map.

    Args:
        path: The SQLite file; its folder is created when missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS stat_cache (path TEXT PRIMARY KEY, size INTEGER, "
                "mtime_ns INTEGER, inode INTEGER, digest TEXT)"
            )

    @staticmethod
    def _key(path: str | os.PathLike[str]) -> tuple[str, os.stat_result]:
        resolved = os.path.realpath(path)
        return resolved, os.stat(resolved)

    def lookup(self, path: str | os.PathLike[str]) -> str | None:
        """Return the remembered digest of ``path`` if the file is unchanged, else ``None``."""
        resolved, st = self._key(path)
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, inode, digest FROM stat_cache WHERE path = ?", (resolved,)
            ).fetchone()
        if row is None or tuple(row[:3]) != (st.st_size, st.st_mtime_ns, st.st_ino):
            return None
        return str(row[3])

    def remember(self, path: str | os.PathLike[str], digest: str, st: os.stat_result) -> None:
        """Remember ``digest`` for ``path`` as it was when ``st`` was taken."""
        resolved = os.path.realpath(path)
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO stat_cache VALUES (?, ?, ?, ?, ?)",
                (resolved, st.st_size, st.st_mtime_ns, st.st_ino, digest),
            )

    def digest_of(self, path: str | os.PathLike[str]) -> str:
        """Return the sha256 of a local file: the remembered one while it is unchanged."""
        known = self.lookup(path)
        if known is not None:
            return known
        st = os.stat(path)
        digest = sha256_file(path)
        self.remember(path, digest, st)
        return digest

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
