"""Shared fixtures: an isolated working folder per test, and throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bundle_helpers import Digits, accuracy_goal, digits_frames, write_digits
from serving import LiveServer, start_server

_ENV = ("ENSIGN_TRACKING_URI", "ENSIGN_ARTIFACTS_URI", "ENSIGN_PROJECT", "ENSIGN_TOKEN")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in its own folder with no ENSIGN_* settings and a private cache."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tracking_dir(tmp_path: Path) -> Path:
    """A tracking folder (the embedded default) inside the test's folder."""
    return tmp_path / "tracking"


def _postgres_admin_url() -> str:
    url = os.environ.get("ENSIGN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("ENSIGN_TEST_POSTGRES_URL is not set (CI sets it)")
    return url


def create_postgres_database() -> str:
    """Create an empty database on the test server and return its URL."""
    admin = sa.make_url(_postgres_admin_url())
    name = f"ensign_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    """Drop a database made by :func:`create_postgres_database`."""
    admin = sa.make_url(_postgres_admin_url())
    name = sa.make_url(url).database
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh metadata database: SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


# --- S3: moto's server, a real HTTP endpoint (no in-process patching of botocore) -------

# Settings of the developer's own AWS setup that must not leak into tests.
_AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
)


def moto_api(endpoint: str, action: str, body: bytes = b"") -> None:
    """POST to moto's own control API, e.g. ``reset`` or ``reset-auth``."""
    import urllib.request

    request = urllib.request.Request(
        f"{endpoint}/moto-api/{action}",
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and a free port, started once per session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A freshly reset moto server, named in the standard AWS variables; returns its URL."""
    for name in _AWS_UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws" / "credentials"))
    moto_api(moto_endpoint, "reset-auth", b"inf")
    moto_api(moto_endpoint, "reset")
    return moto_endpoint


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh, empty bucket on the moto server."""
    import boto3

    name = f"ensign-test-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_env)
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()
    return name


@pytest.fixture
def s3_enforced_credentials(s3_env: str) -> Iterator[tuple[str, str]]:
    """Make the moto server check signatures; returns an access key it accepts.

    The key belongs to an IAM user allowed ``s3:*``; any other key or secret is refused
    (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``) until the test ends.
    """
    import json

    import boto3

    iam = boto3.client("iam", endpoint_url=s3_env)
    try:
        iam.create_user(UserName="ensign-test")
        iam.put_user_policy(
            UserName="ensign-test",
            PolicyName="s3-all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="ensign-test")["AccessKey"]
    finally:
        iam.close()
    moto_api(s3_env, "reset-auth", b"0")
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        moto_api(s3_env, "reset-auth", b"inf")


# --- ensign server: a real process on a free port (see serving.py) ---------------------


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh ``ensign server`` on a folder store, with its administrator token."""
    server = start_server(tmp_path / "server")
    try:
        yield server
    finally:
        server.stop()


# --- bundles: the digits frames and a passing bundle (see bundle_helpers.py) -------------------


@pytest.fixture(scope="session")
def digits() -> Digits:
    """The digits frames (with predictions and scores) and the model, trained once."""
    return digits_frames()


@pytest.fixture
def bundle_dir(tmp_path: Path, digits: Digits) -> Path:
    """A passing digits bundle folder."""
    return write_digits(tmp_path / "src" / "digits", digits, [accuracy_goal(0.5)])
