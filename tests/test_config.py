"""Where metadata and bytes live: tracking and artifacts URI resolution, remembered stores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ensign.backend import ARTIFACTS_URI_SETTING, Backend, open_backend
from ensign.config import (
    DEFAULT_FOLDER,
    resolve_artifacts_uri,
    resolve_project,
    resolve_tracking_uri,
    tracking_location,
)
from ensign.errors import ConfigurationError, StoreNotAvailable


@contextmanager
def backend(*args: object, **kwargs: object) -> Iterator[Backend]:
    opened = open_backend(*args, **kwargs)  # type: ignore[arg-type]
    try:
        yield opened
    finally:
        opened.close()


# --- tracking URI ---------------------------------------------------------------------


def test_tracking_uri_defaults_to_a_folder_in_the_working_directory() -> None:
    assert resolve_tracking_uri() == str(Path.cwd() / DEFAULT_FOLDER)
    assert DEFAULT_FOLDER == ".ensign"


def test_tracking_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENSIGN_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri() == "sqlite:///from-env.db"
    # An empty variable counts as unset.
    monkeypatch.setenv("ENSIGN_TRACKING_URI", "")
    assert resolve_tracking_uri() == str(Path.cwd() / DEFAULT_FOLDER)


def test_the_argument_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENSIGN_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri("sqlite:///explicit.db") == "sqlite:///explicit.db"
    assert resolve_tracking_uri(tmp_path / "folder") == str(tmp_path / "folder")
    assert resolve_tracking_uri("") == "sqlite:///from-env.db"


def test_a_folder_tracking_uri(tmp_path: Path) -> None:
    location = tracking_location("runs")
    folder = Path.cwd() / "runs"
    assert location.uri == str(folder)
    assert location.database_url == f"sqlite:///{folder / 'ensign.db'}"
    assert location.default_artifacts_uri == (folder / "artifacts").as_uri()
    assert location.local_folder == folder
    assert location.is_remote is False
    as_url = tracking_location((tmp_path / "other").as_uri())
    assert as_url.database_url == f"sqlite:///{tmp_path / 'other' / 'ensign.db'}"


def test_a_sqlite_tracking_uri(tmp_path: Path) -> None:
    absolute = tracking_location(f"sqlite:///{tmp_path / 'meta' / 'reg.db'}")
    assert absolute.database_url == f"sqlite:///{tmp_path / 'meta' / 'reg.db'}"
    assert absolute.default_artifacts_uri == (tmp_path / "meta" / "reg-artifacts").as_uri()
    assert absolute.local_folder == tmp_path / "meta"
    relative = tracking_location("sqlite:///rel.db")
    assert relative.database_url == f"sqlite:///{Path.cwd() / 'rel.db'}"


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:"])
def test_a_sqlite_uri_without_a_file_is_refused(uri: str) -> None:
    with pytest.raises(ConfigurationError, match="names no database file; use sqlite:///"):
        tracking_location(uri)


def test_postgres_uris_use_psycopg() -> None:
    for uri in ("postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        location = tracking_location(uri)
        assert location.database_url == "postgresql+psycopg://u@h/db"
        assert location.default_artifacts_uri is None
        assert location.local_folder is None


def test_a_server_uri_is_remote_and_opening_it_sends_nothing() -> None:
    location = tracking_location("http://127.0.0.1:9")  # nothing listens on port 9
    assert location.is_remote
    backend = open_backend("http://127.0.0.1:9")  # no request yet: no server needed
    try:
        assert backend.location.is_remote
    finally:
        backend.close()


def test_a_server_chooses_where_bytes_go() -> None:
    with pytest.raises(ConfigurationError, match="artifacts"):
        open_backend("http://127.0.0.1:9", "s3://bucket/elsewhere")


@pytest.mark.parametrize("uri", ["ftp://host/path", "s3://bucket/meta", "mysql://u@h/db"])
def test_an_unsupported_scheme_is_refused(uri: str) -> None:
    scheme = uri.split("://", 1)[0]
    with pytest.raises(ConfigurationError, match=f"unsupported tracking URI scheme '{scheme}'"):
        tracking_location(uri)
    with pytest.raises(ConfigurationError, match="unsupported tracking URI scheme"):
        open_backend(uri)


def test_a_file_where_the_tracking_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "occupied").write_text("not a folder")
    with pytest.raises(ConfigurationError, match="exists and is not a folder"):
        tracking_location(str(tmp_path / "occupied"))


# --- artifacts URI --------------------------------------------------------------------


def test_artifacts_uri_from_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert resolve_artifacts_uri() is None
    monkeypatch.setenv("ENSIGN_ARTIFACTS_URI", "memory://from-env")
    assert resolve_artifacts_uri() == "memory://from-env"
    assert resolve_artifacts_uri("s3://bucket/prefix") == "s3://bucket/prefix"
    # A plain folder becomes an absolute file:// URL.
    assert resolve_artifacts_uri("blobs") == (Path.cwd() / "blobs").as_uri()
    monkeypatch.setenv("ENSIGN_ARTIFACTS_URI", "relative-blobs")
    assert resolve_artifacts_uri() == (Path.cwd() / "relative-blobs").as_uri()


def test_project_from_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_project() == "default"
    monkeypatch.setenv("ENSIGN_PROJECT", "org/env")
    assert resolve_project() == "org/env"
    assert resolve_project("org/arg") == "org/arg"


def test_the_default_store_is_inside_the_tracking_folder(tmp_path: Path) -> None:
    with backend() as opened:
        folder = Path.cwd() / DEFAULT_FOLDER
        assert opened.location.local_folder == folder
        assert opened.store.uri == (folder / "artifacts").as_uri()
        assert opened.registry.get_setting(ARTIFACTS_URI_SETTING) == opened.store.uri
        digest = opened.store.put_bytes(b"bytes").digest
    assert (folder / "ensign.db").is_file()
    assert (folder / "artifacts" / "blobs" / "sha256" / digest[:2] / digest[2:]).is_file()
    with backend(f"sqlite:///{tmp_path / 'meta.db'}") as opened:
        assert opened.store.uri == (tmp_path / "meta-artifacts").as_uri()


def test_a_store_remembers_the_first_artifacts_uri(tmp_path: Path) -> None:
    tracking = tmp_path / "tracking"
    first = (tmp_path / "first").as_uri()
    with backend(tracking, first) as opened:
        assert opened.store.uri == first
    # Naming none uses the remembered one, whatever the tracking folder's default is.
    with backend(tracking) as opened:
        assert opened.store.uri == first
    # Naming another uses it for this session but does not change what is remembered.
    with backend(tracking, tmp_path / "second") as opened:
        assert opened.store.uri == (tmp_path / "second").as_uri()
        assert opened.registry.get_setting(ARTIFACTS_URI_SETTING) == first
    with backend(tracking) as opened:
        assert opened.store.uri == first


def test_the_environment_names_the_artifacts_uri(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENSIGN_TRACKING_URI", str(tmp_path / "env-tracking"))
    monkeypatch.setenv("ENSIGN_ARTIFACTS_URI", str(tmp_path / "env-blobs"))
    with backend() as opened:
        assert opened.location.local_folder == tmp_path / "env-tracking"
        assert opened.store.uri == (tmp_path / "env-blobs").as_uri()
    monkeypatch.delenv("ENSIGN_ARTIFACTS_URI")
    with backend() as opened:
        assert opened.store.uri == (tmp_path / "env-blobs").as_uri()


def test_an_artifacts_uri_whose_package_is_missing(tmp_path: Path) -> None:
    with pytest.raises(StoreNotAvailable, match="not available"):
        open_backend(tmp_path / "tracking", "nosuchproto://bucket/x")


def test_store_for_reuses_the_default_store(tmp_path: Path) -> None:
    with backend(tmp_path / "tracking") as opened:
        assert opened.store_for(None) is opened.store
        assert opened.store_for(opened.store.uri + "/") is opened.store
        other = (tmp_path / "elsewhere").as_uri()
        assert opened.store_for(other).uri == other
        assert opened.store_for(other) is opened.store_for(other)


@pytest.mark.postgres
def test_a_postgres_store_must_be_told_its_artifacts_uri(postgres_url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="pass artifacts_uri=") as info:
        open_backend(postgres_url)
    assert "ENSIGN_ARTIFACTS_URI" in str(info.value)
    blobs = (tmp_path / "shared-blobs").as_uri()
    with backend(postgres_url, blobs) as opened:
        assert opened.store.uri == blobs
        assert opened.location.local_folder is None
    with backend(postgres_url) as opened:
        assert opened.store.uri == blobs
