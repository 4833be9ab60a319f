"""The artifact helper (openEO's ``build_artifact_helper`` API) on folder, S3 and served stores."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
import pytest
import requests

from ensign import errors, tracking
from ensign.artifacts import (
    ArtifactHelper,
    ArtifactsException,
    FsspecConfig,
    InvalidArtifactArgument,
    InvalidProviderConfig,
    LocalConfig,
    NoAdvertisedProviders,
    NoDefaultConfig,
    ProviderConfig,
    ProviderSpecificException,
    S3Config,
    UnsupportedArtifactsType,
    available_provider_types,
    build_artifact_helper,
    register_provider_type,
)
from ensign.artifacts.base import check_object_name, current_user
from ensign.artifacts.local import LocalArtifactHelper
from ensign.artifacts.registry import get_helper_class, known_provider_types
from ensign.errors import ArtifactNotFound, EnsignError, IntegrityError
from ensign.storage.s3 import MIN_PART_SIZE
from ensign.storage.signing import EXPIRES_PARAM, HmacSigner, load_or_create_secret

PART = MIN_PART_SIZE


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def dates_around(call: Callable[[], str]) -> tuple[str, set[str]]:
    """Run ``call``; return its result and the UTC dates (YYYY/MM/DD) it may have used."""
    before = datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d")
    result = call()
    after = datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d")
    return result, {before, after}


# --- the exception tree ----------------------------------------------------------------


def test_the_exceptions_are_named_as_in_the_reference_and_part_of_the_tree() -> None:
    for cls in (
        NoAdvertisedProviders,
        UnsupportedArtifactsType,
        NoDefaultConfig,
        InvalidProviderConfig,
        ProviderSpecificException,
        InvalidArtifactArgument,
    ):
        assert issubclass(cls, ArtifactsException)
        assert getattr(errors, cls.__name__) is cls  # one tree, re-exported
    assert issubclass(ArtifactsException, EnsignError)
    assert issubclass(InvalidArtifactArgument, ValueError)
    assert issubclass(InvalidProviderConfig, ValueError)
    assert errors.http_status_for(NoDefaultConfig("bucket")) == 400
    assert errors.http_status_for(ProviderSpecificException("denied")) == 502
    assert errors.http_status_for(NoAdvertisedProviders("x")) == 501
    assert NoDefaultConfig("bucket", "S3Config").key == "bucket"
    assert UnsupportedArtifactsType("GCSConfig").type_id == "GCSConfig"


# --- a folder store (the embedded default) --------------------------------------------


def test_a_folder_store_gives_a_local_helper(tmp_path: Path, tracking_dir: Path) -> None:
    helper = build_artifact_helper(tracking_dir)
    assert isinstance(helper, LocalArtifactHelper)
    source = write(tmp_path / "model.onnx", b"onnx bytes")
    uri, dates = dates_around(lambda: helper.upload_file(source))
    root = (tracking_dir / "artifacts").as_uri()
    assert uri in {f"{root}/artifacts/{current_user()}/{d}/model.onnx" for d in dates}
    assert Path(unquote(urlsplit(uri).path)).read_bytes() == b"onnx bytes"
    assert helper.upload_file(source, "") == uri  # empty means the file's name, as upstream
    named = helper.upload_file(source, "exports/v2/model.onnx")
    assert named.endswith("/exports/v2/model.onnx")
    assert Path(unquote(urlsplit(named).path)).read_bytes() == b"onnx bytes"


def test_the_default_tracking_folder_is_used(tmp_path: Path) -> None:
    helper = build_artifact_helper()
    uri = helper.upload_file(write(tmp_path / "a.txt", b"a"))
    assert uri.startswith((tmp_path / ".ensign" / "artifacts").as_uri() + "/artifacts/")


def test_a_folder_helper_signs_urls_the_server_can_check(
    tmp_path: Path, tracking_dir: Path
) -> None:
    helper = build_artifact_helper(tracking_dir, LocalConfig(base_url="http://files.example/a"))
    uri = helper.upload_file(write(tmp_path / "data.csv", b"x,y\n"), object_name="data.csv")
    started = int(time.time())
    url = helper.get_presigned_url(uri)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    key = unquote(parts.path)[len("/a/") :]
    assert url.startswith("http://files.example/a/artifacts/")
    assert key.endswith("/data.csv")
    assert started + 604800 <= int(query[EXPIRES_PARAM]) <= int(time.time()) + 604800
    # The secret lives in the tracking folder, where the server finds it.
    signer = HmacSigner(load_or_create_secret(tracking_dir / "signing.key"))
    assert signer.check_query("GET", key, query) is None
    assert signer.check_query("GET", key + "x", query) == "bad signature"
    assert signer.check_query("GET", key, query, now=time.time() + 604801) == "expired"
    short = dict(parse_qsl(urlsplit(helper.get_presigned_url(uri, 60)).query))
    assert int(short[EXPIRES_PARAM]) <= int(time.time()) + 60


def test_the_user_part_of_keys_can_be_set(tmp_path: Path, tracking_dir: Path) -> None:
    helper = build_artifact_helper(tracking_dir, LocalConfig(user="alice"))
    uri = helper.upload_file(write(tmp_path / "a.bin", b"a"))
    assert "/artifacts/alice/" in uri
    assert "/" not in current_user()
    assert current_user() == current_user().strip("._")


def test_a_file_changing_while_uploaded_to_a_folder_publishes_nothing(
    tmp_path: Path, tracking_dir: Path
) -> None:
    helper = build_artifact_helper(tracking_dir)
    source = write(tmp_path / "growing.bin", os.urandom(17 * 2**20))

    calls: list[int] = []

    def grow(count: int) -> None:
        calls.append(count)
        if len(calls) == 1:
            with open(source, "ab") as handle:
                handle.write(b"more")

    with pytest.raises(IntegrityError, match=r"growing\.bin changed while it was uploaded"):
        helper.upload_file(source, progress=grow)
    assert [p for p in (tracking_dir / "artifacts").rglob("*") if p.is_file()] == []


# --- an S3 store ----------------------------------------------------------------------


@pytest.fixture
def s3_tracking(
    s3_bucket: str, tracking_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str]:
    """A tracking folder whose artifacts go to ``s3://<bucket>/team``."""
    monkeypatch.setenv("ENSIGN_ARTIFACTS_URI", f"s3://{s3_bucket}/team")
    return tracking_dir, s3_bucket


def object_keys(bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    try:
        return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    finally:
        client.close()


def pending_uploads(bucket: str) -> list[Any]:
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    try:
        return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    finally:
        client.close()


def test_an_s3_store_gives_an_s3_helper_and_urls_that_fetch_the_bytes(
    s3_tracking: tuple[Path, str], tmp_path: Path
) -> None:
    tracking_dir, bucket = s3_tracking
    helper = build_artifact_helper(tracking_dir)
    assert type(helper).__name__ == "S3ArtifactHelper"
    data = os.urandom(100_000)
    source = write(tmp_path / "model.bin", data)
    uri, dates = dates_around(lambda: helper.upload_file(source))
    user = current_user()
    assert uri in {f"s3://{bucket}/team/artifacts/{user}/{d}/model.bin" for d in dates}
    assert object_keys(bucket) == [uri[len(f"s3://{bucket}/") :]]
    url = helper.get_presigned_url(uri, expires_in_seconds=600)
    assert dict(parse_qsl(urlsplit(url).query))["X-Amz-Expires"] == "600"
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200
    assert answer.content == data
    week = dict(parse_qsl(urlsplit(helper.get_presigned_url(uri)).query))
    assert week["X-Amz-Expires"] == "604800"  # the default, as in the reference


def test_the_store_remembers_its_s3_artifacts_uri(s3_bucket: str, tracking_dir: Path) -> None:
    with tracking.init(project="p", tracking_uri=tracking_dir, artifacts_uri=f"s3://{s3_bucket}/x"):
        pass
    helper = build_artifact_helper(tracking_dir)  # no ENSIGN_ARTIFACTS_URI now
    assert repr(helper) == f"S3ArtifactHelper('s3://{s3_bucket}/x')"


def test_a_large_upload_goes_in_parts_with_progress(
    s3_tracking: tuple[Path, str], tmp_path: Path
) -> None:
    tracking_dir, bucket = s3_tracking
    config = S3Config(prefix="big", storage_options={"default_block_size": PART})
    helper = build_artifact_helper(tracking_dir, config)
    data = os.urandom(2 * PART + 123)
    seen: list[int] = []
    uri = helper.upload_file(write(tmp_path / "big.bin", data), "x/big.bin", progress=seen.append)
    assert uri.startswith(f"s3://{bucket}/big/artifacts/")
    assert sum(seen) == len(data)
    assert len(seen) == 3
    assert requests.get(helper.get_presigned_url(uri, 60), timeout=30).content == data


def test_uploading_the_same_name_again_replaces_it(
    s3_tracking: tuple[Path, str], tmp_path: Path
) -> None:
    tracking_dir, _ = s3_tracking
    helper = build_artifact_helper(tracking_dir)
    first = helper.upload_file(write(tmp_path / "a.txt", b"one"), "notes.txt")
    second = helper.upload_file(write(tmp_path / "b.txt", b"two"), "notes.txt")
    assert first == second
    assert requests.get(helper.get_presigned_url(second, 60), timeout=30).content == b"two"


def test_a_file_changing_while_uploaded_to_s3_publishes_nothing(
    s3_tracking: tuple[Path, str], tmp_path: Path
) -> None:
    tracking_dir, bucket = s3_tracking
    config = S3Config(storage_options={"default_block_size": PART})
    helper = build_artifact_helper(tracking_dir, config)
    source = write(tmp_path / "growing.bin", os.urandom(3 * PART))

    calls: list[int] = []

    def grow(count: int) -> None:
        calls.append(count)
        if len(calls) == 1:
            with open(source, "ab") as handle:
                handle.write(b"more")

    with pytest.raises(IntegrityError, match=r"growing\.bin changed while it was uploaded"):
        helper.upload_file(source, progress=grow)
    assert object_keys(bucket) == []
    assert pending_uploads(bucket) == []


def test_a_bucket_that_does_not_exist(s3_tracking: tuple[Path, str], tmp_path: Path) -> None:
    tracking_dir, _ = s3_tracking
    helper = build_artifact_helper(tracking_dir, S3Config(bucket="no-such-bucket-for-ensign"))
    with pytest.raises(
        ProviderSpecificException, match="the bucket 'no-such-bucket-for-ensign' does not exist"
    ) as info:
        helper.upload_file(write(tmp_path / "a.bin", b"a"))
    assert info.value.__cause__ is not None


def test_wrong_credentials(
    s3_tracking: tuple[Path, str], s3_enforced_credentials: tuple[str, str], tmp_path: Path
) -> None:
    tracking_dir, bucket = s3_tracking
    key_id, secret = s3_enforced_credentials
    source = write(tmp_path / "a.bin", b"a")
    good = build_artifact_helper(
        tracking_dir, S3Config(storage_options={"key": key_id, "secret": secret})
    )
    assert good.upload_file(source).startswith(f"s3://{bucket}/")
    bad = build_artifact_helper(
        tracking_dir, S3Config(storage_options={"key": key_id, "secret": "wrong"})
    )
    with pytest.raises(ProviderSpecificException, match=r"refused access .*check the credentials"):
        bad.upload_file(source, "other.bin")


# --- bad input ------------------------------------------------------------------------


BAD_NAMES = [
    ("../escape.bin", "must not contain '.' or '..' parts"),
    ("a/../../b.bin", "must not contain '.' or '..' parts"),
    ("./a.bin", "must not contain '.' or '..' parts"),
    ("/etc/passwd", "must be relative, not an absolute path"),
    ("C:/Windows/x.dll", "must be relative, not an absolute path"),
    ("a\\b.bin", "backslashes or control characters"),
    ("a\nb.bin", "backslashes or control characters"),
    ("a//b.bin", "has an empty part"),
    ("folder/", "has an empty part"),
    ("x" * 600, "at most 512 are allowed"),
]


@pytest.mark.parametrize(("name", "words"), BAD_NAMES)
def test_bad_object_names_are_refused(
    name: str, words: str, tmp_path: Path, tracking_dir: Path
) -> None:
    helper = build_artifact_helper(tracking_dir)
    with pytest.raises(InvalidArtifactArgument, match=words):
        helper.upload_file(write(tmp_path / "a.bin", b"a"), name)
    assert not (tracking_dir / "artifacts").exists() or not any(
        p.is_file() for p in (tracking_dir / "artifacts").rglob("*")
    )
    assert not (tmp_path / "escape.bin").exists()


def test_bad_object_names_are_refused_on_s3_before_any_byte_moves(
    s3_tracking: tuple[Path, str], tmp_path: Path
) -> None:
    tracking_dir, bucket = s3_tracking
    helper = build_artifact_helper(tracking_dir)
    source = write(tmp_path / "a.bin", b"a")
    for name, words in BAD_NAMES:
        with pytest.raises(InvalidArtifactArgument, match=words):
            helper.upload_file(source, name)
    assert object_keys(bucket) == []


def test_good_object_names() -> None:
    for name in ("a.bin", "dir/sub/a.bin", "a..b", ".hidden", "name with spaces.txt"):
        assert check_object_name(name) == name
    with pytest.raises(InvalidArtifactArgument, match="non-empty string"):
        check_object_name(None)


def test_missing_and_non_file_sources(tmp_path: Path, tracking_dir: Path) -> None:
    helper = build_artifact_helper(tracking_dir)
    with pytest.raises(ArtifactNotFound, match=r"no such file: .*absent\.bin"):
        helper.upload_file(tmp_path / "absent.bin")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InvalidArtifactArgument, match="is not a regular file"):
        helper.upload_file(tmp_path / "folder")


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0, "must be positive"), (-60, "must be positive"), (604801, "at most 604800 .7 days.")],
)
def test_expiry_out_of_range_is_refused_by_every_helper(
    seconds: int, words: str, s3_tracking: tuple[Path, str], tmp_path: Path
) -> None:
    tracking_dir, _ = s3_tracking
    source = write(tmp_path / "a.bin", b"a")
    s3 = build_artifact_helper(tracking_dir)
    local = LocalArtifactHelper.from_provider(
        None, LocalConfig(root=str(tmp_path / "store"), signing_key=str(tmp_path / "key"))
    )
    for helper in (s3, local):
        uri = helper.upload_file(source)
        with pytest.raises(InvalidArtifactArgument, match=words):
            helper.get_presigned_url(uri, expires_in_seconds=seconds)


def test_storage_uris_of_another_store_are_refused(
    s3_tracking: tuple[Path, str], tmp_path: Path
) -> None:
    tracking_dir, bucket = s3_tracking
    s3 = build_artifact_helper(tracking_dir)
    for uri, words in [
        ("gs://bucket/key", "not an S3 URI"),
        ("file:///tmp/x", "not an S3 URI"),
        ("https://example.com/x", "not an S3 URI"),
        ("s3://other-bucket/key", "not in this provider's bucket"),
        (f"s3://{bucket}", "names no object"),
        ("s3:///key", "names no bucket"),
    ]:
        with pytest.raises(InvalidArtifactArgument, match=words):
            s3.get_presigned_url(uri, 60)
    local = LocalArtifactHelper.from_provider(
        None, LocalConfig(root=str(tmp_path / "store"), signing_key=str(tmp_path / "key"))
    )
    for uri, words in [
        (f"s3://{bucket}/key", "is not a file:// URI"),
        ((tmp_path / "elsewhere.bin").as_uri(), "is outside the folder"),
        ((tmp_path / "store").as_uri(), "names no file"),
    ]:
        with pytest.raises(InvalidArtifactArgument, match=words):
            local.get_presigned_url(uri, 60)


def test_a_config_of_a_type_the_store_does_not_advertise(
    s3_tracking: tuple[Path, str],
) -> None:
    tracking_dir, _ = s3_tracking
    with pytest.raises(UnsupportedArtifactsType, match="advertises only S3Config") as info:
        build_artifact_helper(tracking_dir, LocalConfig(root="/tmp/x"))
    assert info.value.type_id == "LocalConfig"
    with pytest.raises(InvalidProviderConfig, match="must be a storage config"):
        build_artifact_helper(tracking_dir, {"bucket": "x"})  # type: ignore[arg-type]


def test_a_store_whose_package_is_missing_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("gcsfs") is not None:
        pytest.fail("gcsfs is installed: no missing package to test with")
    monkeypatch.setenv("ENSIGN_ARTIFACTS_URI", "gs://bucket/prefix")
    with pytest.raises(UnsupportedArtifactsType, match=r"pip install 'ensign\[gcs\]'"):
        build_artifact_helper(tmp_path / "tracking")
    with pytest.raises(UnsupportedArtifactsType, match=r"pip install 'ensign\[gcs\]'"):
        get_helper_class("FsspecConfig").from_provider(None, FsspecConfig(uri="gs://b/p"))


def test_without_s3fs_an_s3_store_names_the_extra(tmp_path: Path) -> None:
    # A fresh interpreter in which importing s3fs fails, as it does where it is not installed.
    script = """
import sys
sys.modules["s3fs"] = None
from ensign.artifacts import UnsupportedArtifactsType, build_artifact_helper
from ensign.artifacts.registry import get_helper_class
for attempt in (lambda: get_helper_class("S3Config"), lambda: build_artifact_helper(sys.argv[1])):
    try:
        attempt()
    except UnsupportedArtifactsType as error:
        print(type(error).__name__, error.type_id, "|", error)
"""
    env = {**os.environ, "ENSIGN_ARTIFACTS_URI": "s3://bucket/prefix"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "tracking")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout + done.stderr
    for line in lines:
        assert line.startswith("UnsupportedArtifactsType S3Config |"), line
        assert "pip install 'ensign[s3]'" in line


def test_a_memory_store_uploads_but_cannot_sign(
    tmp_path: Path, tracking_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = f"memory://ensign-artifacts-{os.getpid()}-{time.time_ns()}"
    monkeypatch.setenv("ENSIGN_ARTIFACTS_URI", root)
    helper = build_artifact_helper(tracking_dir)
    assert type(helper).__name__ == "FsspecArtifactHelper"
    uri = helper.upload_file(write(tmp_path / "a.bin", b"in memory"), "a.bin")
    assert uri.startswith(f"{root}/artifacts/")
    assert uri.endswith("/a.bin")
    import fsspec

    assert fsspec.filesystem("memory").cat_file(uri) == b"in memory"
    with pytest.raises(ProviderSpecificException, match=r"memory:// store .* cannot sign URLs"):
        helper.get_presigned_url(uri, 60)
    with pytest.raises(InvalidArtifactArgument, match="is not an object of the store"):
        helper.get_presigned_url("memory://elsewhere/a.bin", 60)


# --- the registry -----------------------------------------------------------------------


def test_the_registry_is_lazy_and_names_what_to_install() -> None:
    assert {"S3Config", "LocalConfig", "FsspecConfig"} <= set(available_provider_types())
    assert get_helper_class("LocalConfig") is LocalArtifactHelper
    with pytest.raises(
        UnsupportedArtifactsType, match=r"'GCSConfig' is not supported.*known types"
    ):
        get_helper_class("GCSConfig")
    register_provider_type(
        "NowhereConfig", "ensign_no_such_module.Helper", errtxt="pip install ensign-nowhere"
    )
    try:
        assert "NowhereConfig" in available_provider_types()
        with pytest.raises(UnsupportedArtifactsType, match="pip install ensign-nowhere") as info:
            get_helper_class("NowhereConfig")
        assert isinstance(info.value.__cause__, ImportError)
        with pytest.raises(ValueError, match="already registered"):
            register_provider_type("NowhereConfig", "elsewhere.Helper")
        register_provider_type("NowhereConfig", LocalArtifactHelper, clobber=True)
        assert get_helper_class("NowhereConfig") is LocalArtifactHelper
    finally:
        known_provider_types.pop("NowhereConfig", None)
        from ensign.artifacts import registry

        registry._registry.pop("NowhereConfig", None)


# --- a served store: capabilities over HTTP -------------------------------------------


class _Capabilities(BaseHTTPRequestHandler):
    document: ClassVar[Any] = {}
    status: ClassVar[int] = 200
    seen_authorization: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen_authorization.append(self.headers.get("Authorization"))
        if self.path != "/api/v1/capabilities":
            self.send_error(404)
            return
        body = json.dumps(self.document).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Capabilities]]]:
    handler = type("Handler", (_Capabilities,), {"document": {}, "seen_authorization": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_a_server_advertises_an_s3_provider(
    server: tuple[str, type[_Capabilities]],
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, handler = server
    handler.document = {
        "api_version": "1",
        "artifacts": {
            "providers": [
                {"id": "main", "type": "S3Config", "cfg": {"bucket": s3_bucket, "prefix": "srv"}},
                {"id": "spare", "type": "LocalConfig", "cfg": {}},
            ]
        },
    }
    monkeypatch.setenv("ENSIGN_TOKEN", "secret-token")
    helper = build_artifact_helper(url)
    assert handler.seen_authorization == ["Bearer secret-token"]
    uri = helper.upload_file(write(tmp_path / "a.bin", b"served"))
    assert uri.startswith(f"s3://{s3_bucket}/srv/artifacts/")
    assert requests.get(helper.get_presigned_url(uri, 60), timeout=30).content == b"served"
    # A config picks the advertised provider of its type.
    with pytest.raises(NoDefaultConfig, match="no value for 'root' of LocalConfig") as info:
        build_artifact_helper(url, LocalConfig())
    assert info.value.key == "root"


@pytest.mark.parametrize(
    "document",
    [{}, {"artifacts": {}}, {"artifacts": {"providers": []}}, [], {"artifacts": None}],
)
def test_a_server_without_providers(server: tuple[str, type[_Capabilities]], document: Any) -> None:
    url, handler = server
    handler.document = document
    with pytest.raises(NoAdvertisedProviders, match="does not advertise providers") as info:
        build_artifact_helper(url)
    assert info.value.where == url


def test_a_server_without_a_capabilities_document(
    server: tuple[str, type[_Capabilities]],
) -> None:
    url, _ = server
    with pytest.raises(NoAdvertisedProviders, match="answered 404"):
        build_artifact_helper(url + "/nowhere")


def test_a_server_that_cannot_be_reached() -> None:
    with pytest.raises(ArtifactsException, match="cannot read the capabilities of http://127"):
        build_artifact_helper("http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("providers", "error", "words"),
    [
        (
            [{"type": "S3Config", "cfg": {}}],
            InvalidProviderConfig,
            "lacks id: it needs id, type and cfg",
        ),
        (
            [{"id": "a", "type": "S3Config", "cfg": []}],
            InvalidProviderConfig,
            "cfg must be an object",
        ),
        ([{"id": 1, "type": "S3Config", "cfg": {}}], InvalidProviderConfig, "must be strings"),
        (["S3Config"], InvalidProviderConfig, "must be an object"),
        ({"id": "a"}, InvalidProviderConfig, "must be a list"),
        (
            [{"id": "a", "type": "S3Config", "cfg": {"bucket": 123}}],
            InvalidProviderConfig,
            "advertises bucket=123; expected a string",
        ),
        (
            [{"id": "a", "type": "S3Config", "cfg": {"bucket": "b", "storage_options": "x"}}],
            InvalidProviderConfig,
            "expected an object",
        ),
        ([{"id": "a", "type": "S3Config", "cfg": {}}], NoDefaultConfig, "no value for 'bucket'"),
        (
            [{"id": "a", "type": "TapeConfig", "cfg": {}}],
            UnsupportedArtifactsType,
            "'TapeConfig' is not supported",
        ),
    ],
)
def test_a_server_with_bad_providers(
    server: tuple[str, type[_Capabilities]],
    providers: Any,
    error: type[ArtifactsException],
    words: str,
) -> None:
    url, handler = server
    handler.document = {"artifacts": {"providers": providers}}
    with pytest.raises(error, match=words):
        build_artifact_helper(url)


def test_provider_configs_round_trip() -> None:
    provider = ProviderConfig.from_dict({"id": "a", "type": "S3Config", "cfg": {"bucket": "b"}})
    assert provider.to_dict() == {"id": "a", "type": "S3Config", "cfg": {"bucket": "b"}}
    assert provider.get_key("bucket") == "b"
    with pytest.raises(NoDefaultConfig, match="no value for 'prefix' of S3Config"):
        provider.get_key("prefix")
    assert S3Config.type_id() == "S3Config"
    merged = S3Config(prefix="mine").merged_with(provider)
    assert (merged.bucket, merged.prefix) == ("b", "mine")
    assert isinstance(build_artifact_helper, object)
    assert issubclass(LocalArtifactHelper, ArtifactHelper)
