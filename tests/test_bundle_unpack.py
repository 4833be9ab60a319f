"""ensign.bundles: unpacking pushed tarballs safely, real tar files of every kind."""

from __future__ import annotations

import bz2
import gzip
import os
import stat
import tarfile
from pathlib import Path

import pytest

from bundle_helpers import (
    evil_tar,
    info,
    make_tar,
    snapshot,
)
from ensign.bundles import (
    DEFAULT_MAX_BUNDLE_BYTES,
    unpack_bundle,
)
from ensign.errors import InvalidBundle, PayloadTooLarge, TargetNotEmpty

# --- unpacking --------------------------------------------------------------------------


def test_unpacks_an_sdk_tar_to_its_top_folder_with_safe_modes(
    tmp_path: Path, bundle_dir: Path
) -> None:
    (bundle_dir / "sub").mkdir()
    (bundle_dir / "sub" / "run.sh").write_text("echo hi\n")
    os.chmod(bundle_dir / "sub" / "run.sh", 0o4777)  # setuid, world-writable: not kept
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    root = unpack_bundle(archive, tmp_path / "dest")
    assert root == tmp_path / "dest" / "digits"
    assert sorted(p.name for p in root.iterdir()) == [
        "openlayer.json",
        "sub",
        "tests.json",
        "training.csv",
        "validation.csv",
    ]
    assert (root / "training.csv").read_bytes() == (bundle_dir / "training.csv").read_bytes()
    assert stat.S_IMODE((root / "sub" / "run.sh").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE(root.stat().st_mode) == 0o755


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz"])
def test_unpacks_compressed_tars(tmp_path: Path, bundle_dir: Path, mode: str) -> None:
    archive = tmp_path / "bundle.tar.x"
    with tarfile.open(archive, mode) as tar:
        tar.add(bundle_dir, arcname=bundle_dir.name)
    root = unpack_bundle(archive, tmp_path / "dest")
    assert (root / "openlayer.json").is_file()


def test_config_at_the_top_makes_the_destination_the_root(tmp_path: Path, bundle_dir: Path) -> None:
    archive = tmp_path / "flat.tar"
    with tarfile.open(archive, "w") as tar:  # as `tar -cf flat.tar -C digits .` makes it
        tar.add(bundle_dir, arcname=".")
    dest = tmp_path / "dest"
    dest.mkdir()  # an empty destination is fine
    assert unpack_bundle(archive, dest) == dest
    assert (dest / "tests.json").is_file()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (info("/tmp/ensign-escaped.txt", size=5), "absolute"),
        (info("../x", size=5), "'..'"),
        (info("digits/../../x", size=5), "'..'"),
        (info("digits/../inside-but-dotted", size=5), "'..'"),
        (info("digits/link", tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
        (info("digits/up", tarfile.SYMTYPE, linkname="../../x"), "symbolic link"),
        (info("digits/hard", tarfile.LNKTYPE, linkname="/etc/passwd"), "hard link"),
        (info("digits/tty", tarfile.CHRTYPE), "character device"),
        (info("digits/disk", tarfile.BLKTYPE), "block device"),
        (info("digits/pipe", tarfile.FIFOTYPE), "FIFO"),
        (info("digits/openlayer.json", size=5), "twice"),
    ],
)
def test_unsafe_entries_are_refused_before_anything_is_written(
    tmp_path: Path, bundle_dir: Path, bad: tarfile.TarInfo, reason: str
) -> None:
    archive = evil_tar(tmp_path / "evil.tar", bundle_dir, bad)
    before = snapshot(tmp_path)
    dest = tmp_path / "work" / "dest"
    with pytest.raises(InvalidBundle) as caught:
        unpack_bundle(archive, dest)
    assert repr(bad.name) in str(caught.value)
    assert reason in str(caught.value)
    assert caught.value.where == bad.name
    assert snapshot(tmp_path) == before  # nothing inside dest, nothing next to it
    assert not dest.exists()
    assert not Path("/tmp/ensign-escaped.txt").exists()


def test_a_real_symlink_in_the_folder_is_refused(tmp_path: Path, bundle_dir: Path) -> None:
    (bundle_dir / "passwd").symlink_to("/etc/passwd")
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    with pytest.raises(InvalidBundle, match=r"'digits/passwd'.*symbolic link"):
        unpack_bundle(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_bundle_over_the_size_limit_is_refused(tmp_path: Path, bundle_dir: Path) -> None:
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    with pytest.raises(PayloadTooLarge, match="limit of 100000 bytes") as caught:
        unpack_bundle(archive, tmp_path / "dest", max_bytes=100_000)
    assert caught.value.limit == 100_000
    assert not (tmp_path / "dest").exists()
    assert DEFAULT_MAX_BUNDLE_BYTES == 512 * 1024 * 1024


def test_a_huge_declared_member_is_refused_from_its_header(tmp_path: Path) -> None:
    header = info("digits/huge.csv", size=10**12).tobuf(tarfile.GNU_FORMAT)
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip.compress(header))  # a header, and none of its terabyte
    with pytest.raises(PayloadTooLarge, match=f"limit of {DEFAULT_MAX_BUNDLE_BYTES} bytes"):
        unpack_bundle(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_files_that_are_not_tars_are_refused(tmp_path: Path, bundle_dir: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a tar file\n" * 100)
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    whole = gzip.compress(make_tar(bundle_dir, tmp_path / "b.tar").read_bytes())
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    broken_bz2 = tmp_path / "broken.tar.bz2"
    broken_bz2.write_bytes(bz2.compress(b"x" * 1000)[:-10])
    for archive in (text, empty, truncated, broken_bz2):
        with pytest.raises(InvalidBundle, match="not a readable tar archive") as caught:
            unpack_bundle(archive, tmp_path / "dest")
        assert archive.name in str(caught.value)
        assert not (tmp_path / "dest").exists()


def test_a_bundle_without_openlayer_json_is_refused(tmp_path: Path, bundle_dir: Path) -> None:
    (bundle_dir / "openlayer.json").unlink()
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    with pytest.raises(InvalidBundle, match=r"no openlayer\.json") as caught:
        unpack_bundle(archive, tmp_path / "dest")
    assert caught.value.where == "openlayer.json"
    assert not (tmp_path / "dest").exists()


def test_a_non_empty_destination_is_refused(tmp_path: Path, bundle_dir: Path) -> None:
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    with pytest.raises(TargetNotEmpty):
        unpack_bundle(archive, tmp_path / "dest")
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["keep.txt"]
