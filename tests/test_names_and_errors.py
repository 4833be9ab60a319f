"""Naming rules, the exception tree, its HTTP status table and the context in messages."""

from __future__ import annotations

import re

import pytest

from ensign import errors
from ensign.errors import (
    HTTP_STATUS,
    ArtifactNotFound,
    BackgroundError,
    ConfigurationError,
    Conflict,
    DigestMismatch,
    EnsignError,
    IntegrityError,
    InvalidCondition,
    InvalidMetric,
    InvalidName,
    InvalidQuery,
    InvalidStage,
    NotFound,
    ProjectNotFound,
    RunEnded,
    RunNotFound,
    StoreNotAvailable,
    TargetNotEmpty,
    UnknownMetric,
    VersionExists,
    VersionNotFound,
    http_status_for,
)
from ensign.names import (
    MAX_NAME_LENGTH,
    check_metric_name,
    check_project_key,
    check_version_name,
)
from ensign.records import Stages, parse_stage

# --- names ----------------------------------------------------------------------------


def test_max_name_length_is_128() -> None:
    assert MAX_NAME_LENGTH == 128


@pytest.mark.parametrize(
    "key",
    ["digits", "org/digits", "A.b-c_9", "o/" + "n" * 126, "x" * 128, "v1.0", "my-org/my.proj_2"],
)
def test_valid_project_keys(key: str) -> None:
    assert check_project_key(key) == key


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "non-empty string"),
        ("x" * 129, "129 characters long; at most 128"),
        ("o/" + "n" * 127, "129 characters long; at most 128"),
        ("a/b/c", "use 'name' or 'owner/name'"),
        ("/digits", "use 'name' or 'owner/name'"),
        ("org/", "use 'name' or 'owner/name'"),
        ("has space", "letters, digits, '-', '_' and '.'"),
        ("semi;colon", "letters, digits"),
        ("t\u00e9st", "letters, digits"),
        ("tab\t", "letters, digits"),
        ("..", "'.' and '..' are not names"),
        ("org/.", "'.' and '..' are not names"),
    ],
)
def test_invalid_project_keys_say_which_rule(key: str, rule: str) -> None:
    with pytest.raises(InvalidName, match=re.escape(rule)):
        check_project_key(key)


def test_a_non_string_project_key() -> None:
    with pytest.raises(InvalidName, match="non-empty string"):
        check_project_key(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["v1", "rc2", "1.0.0", "best_model-final", "x" * 128, "V"])
def test_valid_version_names(name: str) -> None:
    assert check_version_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "non-empty string"),
        ("x" * 129, "129 characters long; at most 128"),
        ("a/b", "letters, digits, '.', '_' and '-' only"),
        ("with space", "letters, digits"),
        ("v1!", "letters, digits"),
        (".", "letters, digits"),
        ("..", "letters, digits"),
    ],
)
def test_invalid_version_names_say_which_rule(name: str, rule: str) -> None:
    with pytest.raises(InvalidName, match=re.escape(rule)) as info:
        check_version_name(name)
    if name and len(name) <= 128:
        assert repr(name) in str(info.value)


def test_metric_names() -> None:
    for good in ("loss", "val/acc", "top-5 accuracy", "m" * 250):
        assert check_metric_name(good) == good
    for bad in ("", "m" * 251, "line\nbreak"):
        with pytest.raises(InvalidMetric, match="invalid metric name"):
            check_metric_name(bad)


def test_names_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="invalid project key"):
        check_project_key("a b")
    with pytest.raises(ValueError, match="invalid metric name"):
        check_metric_name("")


# --- the exception tree ---------------------------------------------------------------


def test_every_public_error_is_an_ensign_error() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, EnsignError), name


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (ConfigurationError, (ValueError,)),
        (StoreNotAvailable, (ConfigurationError, ValueError)),
        (InvalidName, (ValueError,)),
        (InvalidStage, (ValueError,)),
        (InvalidMetric, (ValueError,)),
        (InvalidCondition, (ValueError,)),
        (InvalidQuery, (ValueError,)),
        (NotFound, (LookupError,)),
        (ProjectNotFound, (NotFound, LookupError)),
        (RunNotFound, (NotFound, LookupError)),
        (VersionNotFound, (NotFound, LookupError)),
        (ArtifactNotFound, (NotFound, LookupError)),
        (UnknownMetric, (NotFound, LookupError)),
        (VersionExists, (Conflict,)),
        (TargetNotEmpty, (Conflict,)),
        (DigestMismatch, (IntegrityError,)),
    ],
)
def test_the_tree_matches_the_design(cls: type[EnsignError], bases: tuple[type, ...]) -> None:
    for base in (EnsignError, *bases):
        assert issubclass(cls, base), (cls, base)


def test_conflicts_and_integrity_errors_are_not_value_or_lookup_errors() -> None:
    for cls in (Conflict, VersionExists, IntegrityError, DigestMismatch, RunEnded):
        assert not issubclass(cls, (ValueError, LookupError)), cls


# --- HTTP statuses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (EnsignError("boom"), 500),
        (ConfigurationError("bad uri"), 400),
        (StoreNotAvailable("gs", "gcs"), 400),
        (InvalidName("bad"), 400),
        (InvalidStage("live", ["testing"]), 400),
        (InvalidMetric("bad"), 400),
        (InvalidCondition("unexpected", "a >", 3), 400),
        (InvalidQuery("bad"), 400),
        (NotFound("x"), 404),
        (ProjectNotFound("x"), 404),
        (RunNotFound("x"), 404),
        (VersionNotFound("x"), 404),
        (ArtifactNotFound("x"), 404),
        (UnknownMetric("acc", ["loss"]), 404),
        (Conflict("x"), 409),
        (VersionExists("x"), 409),
        (TargetNotEmpty("x"), 409),
        (IntegrityError("x"), 422),
        (DigestMismatch("f", "a" * 64, "b" * 64), 422),
        (RunEnded("x"), 409),
        (BackgroundError([RuntimeError("x")]), 500),
    ],
)
def test_http_status_for(error: EnsignError, status: int) -> None:
    assert http_status_for(error) == status


def test_a_subclass_outside_the_table_takes_its_parents_status() -> None:
    class Mine(VersionNotFound):
        pass

    assert Mine not in HTTP_STATUS
    assert http_status_for(Mine("x")) == 404


# --- messages carry their context -----------------------------------------------------


def test_unknown_metric_lists_the_logged_ones() -> None:
    error = UnknownMetric("val_acc", ["loss", "acc", "lr"])
    assert str(error) == "unknown metric 'val_acc'; the run logged: acc, loss, lr"
    assert (error.metric, error.logged) == ("val_acc", ("acc", "loss", "lr"))
    assert str(UnknownMetric("x", [])) == "unknown metric 'x'; the run logged: none"


def test_invalid_stage_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidStage) as info:
        parse_stage("live")
    assert str(info.value) == (
        "unknown stage 'live'; valid stages: testing, staging, production, disabled"
    )
    assert info.value.stage == "live"
    assert info.value.valid == tuple(s.value for s in Stages)
    assert parse_stage("Production") is Stages.PRODUCTION
    assert parse_stage(Stages.STAGING) is Stages.STAGING


def test_digest_mismatch_names_the_path() -> None:
    error = DigestMismatch("model/weights.bin", "a" * 64, "b" * 64)
    assert str(error).startswith("digest mismatch for model/weights.bin: ")
    assert "a" * 64 in str(error)
    assert "b" * 64 in str(error)
    assert (error.path, error.expected, error.actual) == ("model/weights.bin", "a" * 64, "b" * 64)


def test_invalid_condition_points_at_the_column() -> None:
    error = InvalidCondition("unexpected '>'", "acc >> 1", 6)
    assert str(error) == "unexpected '>' at column 6\n  acc >> 1\n       ^"
    assert error.column == 6


def test_store_not_available_names_the_extra() -> None:
    error = StoreNotAvailable("gs", "gcs", "No module named 'gcsfs'")
    assert str(error) == (
        "storage protocol 'gs' is not available: pip install 'ensign[gcs]' "
        "(No module named 'gcsfs')"
    )
    unknown = StoreNotAvailable("weird", None)
    assert "install an fsspec package for it" in str(unknown)


def test_background_error_keeps_every_failure() -> None:
    first, second = OSError("disk full"), RuntimeError("later")
    error = BackgroundError([first, second])
    assert error.errors == (first, second)
    assert "disk full" in str(error)
    assert "(and 1 more)" in str(error)
    assert "more" not in str(BackgroundError([first]))
