"""Presigned S3 URLs: GET, PUT and POST (policy), SigV4, expiry bounds.

moto does not check signatures or expiry of presigned requests, so besides fetching and
uploading through moto with plain ``requests``, these tests recompute the SigV4
signatures independently (from the AWS specification) and decode the POST policy.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests

from ensign.errors import ConfigurationError, InvalidArtifactArgument
from ensign.storage.blobstore import BlobStore
from ensign.storage.providers import open_filesystem
from ensign.storage.s3 import S3Presigner, split_s3_uri

SECRET = "testing"  # the moto fixture's AWS_SECRET_ACCESS_KEY


@pytest.fixture
def presigner(s3_env: str) -> S3Presigner:
    fs, _ = open_filesystem("s3://any-bucket")
    return S3Presigner.for_filesystem(fs)


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str) -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, "s3")
    return _hmac(key, "aws4_request")


def sigv4_query_signature(method: str, url: str, secret: str) -> str:
    """Recompute a presigned URL's signature from the SigV4 specification."""
    parts = urlsplit(url)
    query = query_of(url)
    query.pop("X-Amz-Signature")
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )
    canonical_request = "\n".join(
        [
            method,
            quote(parts.path, safe="/-_.~%"),
            canonical_query,
            f"host:{parts.netloc}\n",
            query["X-Amz-SignedHeaders"],
            "UNSIGNED-PAYLOAD",
        ]
    )
    _, date, region, _, _ = query["X-Amz-Credential"].split("/")
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            query["X-Amz-Date"],
            f"{date}/{region}/s3/aws4_request",
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    return hmac.new(signing_key(secret, date, region), to_sign.encode(), hashlib.sha256).hexdigest()


# --- GET ------------------------------------------------------------------------------


def test_a_presigned_get_fetches_the_bytes_with_plain_requests(
    presigner: S3Presigner, s3_env: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = BlobStore(f"s3://{s3_bucket}/store")
    data = b"weights " * 1000
    digest = store.put_bytes(data).digest
    bucket, key = split_s3_uri(store.blob_uri(digest))
    url = presigner.presign_get(bucket, key, 900)
    assert url.startswith(f"{s3_env}/{bucket}/{key}?")
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200
    assert answer.content == data
    ranged = requests.get(url, headers={"Range": "bytes=0-6"}, timeout=30)
    assert (ranged.status_code, ranged.content) == (206, b"weights")


def test_a_presigned_get_is_sigv4_and_signs_method_key_and_expiry(presigner: S3Presigner) -> None:
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    url = presigner.presign_get("bucket", "a/model file.bin", 3600)
    query = query_of(url)
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"  # s3v4, never the old SigV2
    assert query["X-Amz-Expires"] == "3600"
    assert query["X-Amz-SignedHeaders"] == "host"
    key_id, date, region, service, terminal = query["X-Amz-Credential"].split("/")
    assert (key_id, region, service, terminal) == ("testing", "us-east-1", "s3", "aws4_request")
    signed_at = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    assert date == query["X-Amz-Date"][:8]
    assert before - datetime.timedelta(seconds=5) <= signed_at
    assert signed_at <= datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
    assert query["X-Amz-Signature"] == sigv4_query_signature("GET", url, SECRET)
    # What S3 would refuse: another method, a longer expiry, another key, another secret.
    assert query["X-Amz-Signature"] != sigv4_query_signature("PUT", url, SECRET)
    stretched = url.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200")
    assert query["X-Amz-Signature"] != sigv4_query_signature("GET", stretched, SECRET)
    other_key = url.replace("model%20file.bin", "model%20file.bim")
    assert query["X-Amz-Signature"] != sigv4_query_signature("GET", other_key, SECRET)
    assert query["X-Amz-Signature"] != sigv4_query_signature("GET", url, "other-secret")


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "must be positive, got 0"),
        (-1, "must be positive, got -1"),
        (604801, r"at most 604800 \(7 days\), got 604801"),
        (30 * 86400, "at most 604800"),
    ],
)
def test_expiry_out_of_range_is_refused(presigner: S3Presigner, seconds: int, words: str) -> None:
    for sign in (presigner.presign_get, presigner.presign_put):
        with pytest.raises(InvalidArtifactArgument, match=words):
            sign("bucket", "key", seconds)
    with pytest.raises(InvalidArtifactArgument, match=words):
        presigner.presign_post("bucket", "key", seconds, max_length=10)


def test_the_longest_expiry_is_seven_days(presigner: S3Presigner) -> None:
    assert query_of(presigner.presign_get("b", "k", 604800))["X-Amz-Expires"] == "604800"
    assert query_of(presigner.presign_get("b", "k", 1))["X-Amz-Expires"] == "1"


def test_an_empty_key_is_refused(presigner: S3Presigner) -> None:
    with pytest.raises(InvalidArtifactArgument, match="empty key"):
        presigner.presign_get("bucket", "", 60)


# --- PUT ------------------------------------------------------------------------------


def test_a_presigned_put_uploads_with_plain_requests(
    presigner: S3Presigner, s3_bucket: str
) -> None:
    url = presigner.presign_put(s3_bucket, "incoming/bundle.tar", 600)
    assert query_of(url)["X-Amz-Signature"] == sigv4_query_signature("PUT", url, SECRET)
    answer = requests.put(url, data=b"a bundle", timeout=30)
    assert answer.status_code == 200
    fs, _ = open_filesystem(f"s3://{s3_bucket}")
    assert fs.cat_file(f"{s3_bucket}/incoming/bundle.tar") == b"a bundle"


# --- POST -----------------------------------------------------------------------------


def decoded_policy(fields: dict[str, str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return document


def test_a_presigned_post_policy_pins_the_key_and_bounds_the_length(
    presigner: S3Presigner,
) -> None:
    started = time.time()
    post = presigner.presign_post("bucket", "uploads/alice/bundle.tgz", 900, max_length=10_000)
    fields = post.fields
    assert fields["key"] == "uploads/alice/bundle.tgz"
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    policy = decoded_policy(fields)
    conditions = policy["conditions"]
    assert {"bucket": "bucket"} in conditions
    assert {"key": "uploads/alice/bundle.tgz"} in conditions  # the exact key ...
    assert not any(
        isinstance(c, list) and c[0] == "starts-with" and c[1] == "$key" for c in conditions
    )  # ... never a prefix
    assert ["content-length-range", 0, 10_000] in conditions
    assert {"x-amz-algorithm": "AWS4-HMAC-SHA256"} in conditions
    assert {"x-amz-credential": fields["x-amz-credential"]} in conditions
    assert {"x-amz-date": fields["x-amz-date"]} in conditions
    expires = datetime.datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    lifetime = expires.replace(tzinfo=datetime.timezone.utc).timestamp() - started
    assert 900 - 5 <= lifetime <= 900 + 5
    # The policy is signed with the SigV4 key of the credential it names.
    _, date, region, _, _ = fields["x-amz-credential"].split("/")
    expected = hmac.new(
        signing_key(SECRET, date, region), fields["policy"].encode(), hashlib.sha256
    ).hexdigest()
    assert fields["x-amz-signature"] == expected


def test_a_post_policy_with_a_minimum_length(presigner: S3Presigner) -> None:
    post = presigner.presign_post("b", "k", 60, min_length=1, max_length=5)
    assert ["content-length-range", 1, 5] in decoded_policy(post.fields)["conditions"]


def test_a_presigned_post_uploads_as_a_form_with_plain_requests(
    presigner: S3Presigner, s3_bucket: str
) -> None:
    post = presigner.presign_post(s3_bucket, "incoming/form.bin", 600, max_length=1024)
    answer = requests.post(
        post.url, data=post.fields, files={"file": ("form.bin", b"posted bytes")}, timeout=30
    )
    assert answer.status_code in {200, 201, 204}, answer.text
    fs, _ = open_filesystem(f"s3://{s3_bucket}")
    assert fs.cat_file(f"{s3_bucket}/incoming/form.bin") == b"posted bytes"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"key": "uploads/${filename}", "max_length": 10}, "a POST key must be literal"),
        ({"key": "k", "max_length": -1}, r"0 <= min <= max, got 0\.\.-1"),
        ({"key": "k", "min_length": 10, "max_length": 5}, r"got 10\.\.5"),
        ({"key": "k", "min_length": -2, "max_length": 5}, r"got -2\.\.5"),
    ],
)
def test_bad_post_requests_are_refused(
    presigner: S3Presigner, kwargs: dict[str, Any], words: str
) -> None:
    key = kwargs.pop("key")
    with pytest.raises(InvalidArtifactArgument, match=words):
        presigner.presign_post("bucket", key, 60, **kwargs)


# --- where the credentials come from --------------------------------------------------


def test_explicit_storage_options_sign_instead_of_the_environment(s3_env: str) -> None:
    fs, _ = open_filesystem(
        "s3://b",
        {
            "key": "AKIAEXPLICIT",
            "secret": "explicit-secret",
            "client_kwargs": {"region_name": "eu-west-1"},
        },
    )
    url = S3Presigner.for_filesystem(fs).presign_get("b", "k", 60)
    credential = query_of(url)["X-Amz-Credential"].split("/")
    assert (credential[0], credential[2]) == ("AKIAEXPLICIT", "eu-west-1")
    assert query_of(url)["X-Amz-Signature"] == sigv4_query_signature("GET", url, "explicit-secret")
    assert url.startswith(s3_env)  # the endpoint still comes from AWS_ENDPOINT_URL


def test_an_anonymous_store_cannot_sign(s3_env: str) -> None:
    fs, _ = open_filesystem("s3://b", {"anon": True})
    with pytest.raises(ConfigurationError, match="anonymous S3 store"):
        S3Presigner.for_filesystem(fs)
