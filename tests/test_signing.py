"""ensign's own signed URLs (folder stores): HMAC over method, key and expiry."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ensign.errors import ConfigurationError, InvalidArtifactArgument
from ensign.storage.signing import (
    EXPIRES_PARAM,
    MAX_EXPIRES_IN,
    SIGNATURE_PARAM,
    HmacSigner,
    Signer,
    check_expires_in,
    load_or_create_secret,
)

SECRET = bytes(range(32))
NOW = 1_700_000_000


@pytest.fixture
def signer() -> HmacSigner:
    return HmacSigner(SECRET)


def test_a_signature_checks_for_the_same_method_key_and_expiry(signer: HmacSigner) -> None:
    signature = signer.sign("GET", "artifacts/alice/model.bin", NOW + 60)
    assert len(signature) == 64
    assert int(signature, 16) >= 0
    assert signer.check("GET", "artifacts/alice/model.bin", NOW + 60, signature, now=NOW) is None
    assert signer.verify("get", "artifacts/alice/model.bin", NOW + 60, signature, now=NOW)
    assert isinstance(signer, Signer)


@pytest.mark.parametrize(
    ("method", "key", "expires_at"),
    [
        ("PUT", "artifacts/alice/model.bin", NOW + 60),  # another method
        ("GET", "artifacts/alice/model.bim", NOW + 60),  # another key
        ("GET", "artifacts/alice/model.bin/", NOW + 60),
        ("GET", "artifacts/alice/model.bin", NOW + 61),  # a stretched expiry
    ],
)
def test_a_tampered_request_is_refused(
    signer: HmacSigner, method: str, key: str, expires_at: int
) -> None:
    signature = signer.sign("GET", "artifacts/alice/model.bin", NOW + 60)
    assert signer.check(method, key, expires_at, signature, now=NOW) == "bad signature"
    assert not signer.verify(method, key, expires_at, signature, now=NOW)


def test_a_tampered_signature_is_refused(signer: HmacSigner) -> None:
    signature = signer.sign("GET", "k", NOW + 60)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    for bad in (flipped, signature[:-1], signature + "0", "", "é" * 64, signature.upper()):
        assert signer.check("GET", "k", NOW + 60, bad, now=NOW) == "bad signature", bad


def test_another_secret_does_not_verify(signer: HmacSigner) -> None:
    signature = signer.sign("GET", "k", NOW + 60)
    other = HmacSigner(bytes(reversed(range(32))))
    assert other.check("GET", "k", NOW + 60, signature, now=NOW) == "bad signature"


def test_an_expired_signature_is_refused(signer: HmacSigner) -> None:
    signature = signer.sign("GET", "k", NOW)
    assert signer.check("GET", "k", NOW, signature, now=NOW - 1) is None
    assert signer.check("GET", "k", NOW, signature, now=NOW) == "expired"
    assert signer.check("GET", "k", NOW, signature, now=NOW + 3600) == "expired"


def test_sign_url_and_check_query_round_trip(signer: HmacSigner) -> None:
    url = signer.sign_url(
        "http://host:8765/files/", "GET", "artifacts/bob/a b+c.bin", expires_in=600, now=NOW
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "http://host:8765/files/artifacts/bob/a%20b%2Bc.bin"
    )
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query[EXPIRES_PARAM] == str(NOW + 600)
    assert signer.check_query("GET", "artifacts/bob/a b+c.bin", query, now=NOW + 599) is None
    assert signer.check_query("GET", "artifacts/bob/a b+c.bin", query, now=NOW + 600) == "expired"
    assert signer.check_query("HEAD", "artifacts/bob/a b+c.bin", query, now=NOW) == "bad signature"
    stretched = {**query, EXPIRES_PARAM: str(NOW + 10**6)}
    assert signer.check_query("GET", "artifacts/bob/a b+c.bin", stretched, now=NOW) == (
        "bad signature"
    )
    assert signer.check_query("GET", "k", {EXPIRES_PARAM: "x", SIGNATURE_PARAM: "y"}) == (
        "bad signature"
    )
    assert signer.check_query("GET", "k", {}) == "not signed"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (0, "must be positive, got 0"),
        (-5, "must be positive, got -5"),
        (MAX_EXPIRES_IN + 1, "at most 604800 (7 days), got 604801"),
        (10**9, "at most 604800"),
        (1.5, "whole number of seconds"),
        ("60", "whole number of seconds"),
        (True, "whole number of seconds"),
        (None, "whole number of seconds"),
    ],
)
def test_expiry_bounds(value: object, words: str) -> None:
    with pytest.raises(
        InvalidArtifactArgument, match=words.replace("(", r"\(").replace(")", r"\)")
    ):
        check_expires_in(value)


def test_expiry_bounds_accept_one_second_to_seven_days(signer: HmacSigner) -> None:
    assert check_expires_in(1) == 1
    assert check_expires_in(604800) == 604800
    with pytest.raises(InvalidArtifactArgument, match="at most 604800"):
        signer.sign_url("http://h", "GET", "k", expires_in=604801)
    with pytest.raises(InvalidArtifactArgument, match="must be positive"):
        signer.sign_url("http://h", "GET", "k", expires_in=0)


def test_bad_methods_and_keys_are_refused(signer: HmacSigner) -> None:
    with pytest.raises(InvalidArtifactArgument, match="cannot sign HTTP method 'FETCH'"):
        signer.sign("FETCH", "k", NOW)
    with pytest.raises(InvalidArtifactArgument, match="cannot sign key ''"):
        signer.sign("GET", "", NOW)
    with pytest.raises(InvalidArtifactArgument, match="control char"):
        signer.sign("GET", "a\nb", NOW)
    assert signer.check("FETCH", "k", NOW, "00", now=0) == "bad signature"


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 32 bytes, got 16"):
        HmacSigner(b"x" * 16)
    assert repr(HmacSigner(SECRET)) == "HmacSigner(<secret>)"
    assert SECRET.hex() not in repr(HmacSigner(SECRET))


def test_the_secret_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == first
    # A signature made with one process's secret checks with another's.
    signature = HmacSigner(first).sign("GET", "k", NOW + 5)
    assert HmacSigner(load_or_create_secret(path)).verify("GET", "k", NOW + 5, signature, now=NOW)
    assert load_or_create_secret(tmp_path / "other.key") != first


def test_racing_creators_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_create_secret(path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len(set(results)) == 1


def test_a_corrupt_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    path.write_text("not hex at all\n")
    with pytest.raises(ConfigurationError, match=r"holds no usable signing secret.*delete it"):
        load_or_create_secret(path)
    path.write_text("abcd\n")
    with pytest.raises(ConfigurationError, match="no usable signing secret"):
        load_or_create_secret(path)
