"""Safe extraction of a pushed bundle tarball.

A bundle is a tar archive (plain, gzip, bzip2 or xz) holding ``openlayer.json`` either at
its top or inside its single top folder (``tar.add(folder, arcname=folder.name)``, as the
openlayer SDK makes it). Every member is checked before anything is written: absolute
paths, ``..`` parts, symbolic and hard links, devices, FIFOs and entries that would land
outside the destination are refused, so a bad entry anywhere leaves the destination
untouched. Regular files are then streamed out one by one; ``TarFile.extractall`` is never
used.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ensign.errors import InvalidBundle, PayloadTooLarge, TargetNotEmpty

__all__ = ["CONFIG_NAME", "DEFAULT_MAX_BUNDLE_BYTES", "MAX_BUNDLE_ENTRIES", "unpack_bundle"]

DEFAULT_MAX_BUNDLE_BYTES = 512 * 1024 * 1024
"""The largest total size of a bundle's files, in bytes, unless the caller says otherwise."""

MAX_BUNDLE_ENTRIES = 100_000
"""The most members a bundle may have (each becomes a file or folder)."""

CONFIG_NAME = "openlayer.json"
"""The file that marks a bundle's root."""

_FILE_MODE = 0o644
_DIR_MODE = 0o755
_DRIVE = re.compile(r"^[A-Za-z]:")
# What a damaged or foreign archive can raise while its members are read.
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)
# What damaged member data raises while it is streamed out (write errors are not among them).
_DATA_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


@dataclass(frozen=True)
class _Entry:
    """A checked member: the tar info and its path parts relative to the destination."""

    member: tarfile.TarInfo
    parts: tuple[str, ...]


def unpack_bundle(
    archive: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> Path:
    """Unpack a bundle tarball into ``destination`` and return the bundle's root.

    Every member is validated before the first byte is written; a refused member means
    nothing at all is written (``destination`` is not even created).

    Args:
        archive: The tar file (plain, ``.gz``, ``.bz2`` or ``.xz``; detected from its bytes).
        destination: The folder to unpack into; created if absent, and it must be empty.
        max_bytes: The largest total size of the members, in bytes.

    Returns:
        The folder holding ``openlayer.json``: ``destination`` itself when the config is at
        the archive's top, else the archive's single top folder that holds it.

    Raises:
        InvalidBundle: The file is not a readable tar archive, a member is unsafe (absolute,
            ``..``, a link, a device, a FIFO, outside ``destination``, or clashing with
            another member; ``where`` is the member name), there is no ``openlayer.json``,
            or there are more than :data:`MAX_BUNDLE_ENTRIES` members.
        PayloadTooLarge: The members add up to more than ``max_bytes`` (refused at the
            first header that crosses it, before the rest is decompressed).
        TargetNotEmpty: ``destination`` exists and is not an empty folder.
        FileNotFoundError: ``archive`` does not exist.
    """
    archive_path = Path(archive)
    dest = Path(destination)
    _check_destination(dest)
    if not archive_path.is_file():
        raise FileNotFoundError(f"no bundle archive at {archive_path}")
    with _open(archive_path) as tar:
        try:
            members = _members(tar, archive_path, max_bytes)
        except _READ_ERRORS as error:
            raise _unreadable(archive_path, error) from error
        entries = _validate(members, dest)
        root_parts = _find_root(entries)
        try:
            _extract(tar, entries, dest)
        except _DATA_ERRORS as error:
            raise _unreadable(archive_path, error) from error
    return dest.joinpath(*root_parts)


def _members(tar: tarfile.TarFile, archive: Path, max_bytes: int) -> list[tarfile.TarInfo]:
    """List the members, stopping early once they are too many or too large.

    Stopping at the first header over the limit means a small compressed archive that
    declares huge members is refused without decompressing it all.
    """
    members: list[tarfile.TarInfo] = []
    total = 0
    while (member := tar.next()) is not None:
        members.append(member)
        if len(members) > MAX_BUNDLE_ENTRIES:
            raise InvalidBundle(
                f"{archive.name} has more than {MAX_BUNDLE_ENTRIES} entries", where=archive.name
            )
        if member.isfile():
            total += member.size
            if total > max_bytes:
                raise _too_large(total, max_bytes)
    return members


def _too_large(total: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the bundle is too large: its files add up to at least {total} bytes, "
        f"over the limit of {max_bytes} bytes",
        limit=max_bytes,
    )


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except _READ_ERRORS as error:
        raise _unreadable(archive, error) from error


def _unreadable(archive: Path, error: BaseException) -> InvalidBundle:
    return InvalidBundle(
        f"{archive.name} is not a readable tar archive: {error}", where=archive.name
    )


def _check_destination(dest: Path) -> None:
    if not dest.exists():
        return
    if not dest.is_dir():
        raise TargetNotEmpty(f"cannot unpack a bundle into {dest}: it exists and is not a folder")
    if any(dest.iterdir()):
        raise TargetNotEmpty(f"cannot unpack a bundle into {dest}: the folder is not empty")


def _refuse(name: str, reason: str) -> InvalidBundle:
    return InvalidBundle(f"unsafe bundle entry {name!r}: {reason}", where=name)


def _entry_kind(member: tarfile.TarInfo) -> str | None:
    """Name the kind of a member that may not be extracted, or ``None`` for a file or folder."""
    if member.issym():
        return f"a symbolic link (to {member.linkname!r}) is not allowed"
    if member.islnk():
        return f"a hard link (to {member.linkname!r}) is not allowed"
    if member.ischr():
        return "a character device is not allowed"
    if member.isblk():
        return "a block device is not allowed"
    if member.isfifo():
        return "a FIFO is not allowed"
    if not (member.isfile() or member.isdir()):
        return f"entry type {member.type!r} is not allowed"
    return None


def _entry_parts(name: str) -> tuple[str, ...]:
    """Return the path parts of a member name, refusing absolute names and ``..``."""
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or PurePosixPath(name).is_absolute():
        raise _refuse(name, "absolute paths are not allowed")
    raw = name.replace("\\", "/").split("/")
    if ".." in raw:
        raise _refuse(name, "'..' in a path is not allowed")
    if "\x00" in name:
        raise _refuse(name, "NUL in a path is not allowed")
    return tuple(part for part in raw if part not in ("", "."))


def _validate(members: list[tarfile.TarInfo], dest: Path) -> list[_Entry]:
    """Check every member; return the members to extract, in order."""
    resolved_dest = dest.resolve()
    entries: list[_Entry] = []
    files: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    for member in members:
        name = member.name
        kind = _entry_kind(member)
        if kind is not None:
            raise _refuse(name, kind)
        parts = _entry_parts(name)
        target = resolved_dest.joinpath(*parts).resolve()
        if target != resolved_dest and resolved_dest not in target.parents:
            raise _refuse(name, "it would be written outside the bundle folder")
        if not parts:
            continue  # the archive's own top ("./"): the destination itself
        parents = {parts[:i] for i in range(1, len(parts))}
        if member.isdir():
            if parts in files:
                raise _refuse(name, "a folder with the name of a file in the bundle")
            folders.add(parts)
        else:
            if parts in files or parts in folders:
                raise _refuse(name, "the bundle holds this path twice")
            files.add(parts)
        if parents & files:
            raise _refuse(name, "a parent of this entry is a file in the bundle")
        folders |= parents
        entries.append(_Entry(member, parts))
    return entries


def _find_root(entries: list[_Entry]) -> tuple[str, ...]:
    """Return the parts of the folder holding ``openlayer.json``, relative to the destination."""
    files = {entry.parts for entry in entries if not entry.member.isdir()}
    if (CONFIG_NAME,) in files:
        return ()
    tops = sorted({parts[0] for parts in files if parts[1:] == (CONFIG_NAME,)})
    if len(tops) == 1:
        return (tops[0],)
    if tops:
        raise InvalidBundle(
            f"the bundle has {CONFIG_NAME} in several top folders ({', '.join(tops)}); "
            "it must have one",
            where=CONFIG_NAME,
        )
    raise InvalidBundle(
        f"the bundle has no {CONFIG_NAME} at its top or in its single top folder",
        where=CONFIG_NAME,
    )


def _extract(tar: tarfile.TarFile, entries: list[_Entry], dest: Path) -> None:
    """Write the checked entries under ``dest`` (files 0o644, folders 0o755)."""
    made: list[Path] = []

    def make_folder(parts: tuple[str, ...]) -> Path:
        folder = dest.joinpath(*parts)
        missing = [p for p in [folder, *folder.parents] if not p.exists()]
        for path in reversed(missing):
            path.mkdir(mode=_DIR_MODE)
            made.append(path)
        return folder

    make_folder(())
    for entry in entries:
        if entry.member.isdir():
            make_folder(entry.parts)
            continue
        make_folder(entry.parts[:-1])
        target = dest.joinpath(*entry.parts)
        source = tar.extractfile(entry.member)
        if source is None:  # pragma: no cover - isfile() members always have a stream
            raise _refuse(entry.member.name, "its content cannot be read")
        with source, open(target, "xb") as sink:
            shutil.copyfileobj(source, sink)
        os.chmod(target, _FILE_MODE)
    for folder in made:
        os.chmod(folder, _DIR_MODE)
