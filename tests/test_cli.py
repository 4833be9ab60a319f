"""The ``ensign`` command through click's runner: every command, its output and its errors.

Data is set up through the real library (a tracked run that logs real files and promotes);
``test_cli_process.py`` runs the installed command in real processes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ensign import tracking
from ensign.cli.main import cli

MODEL_BYTES = b"weights:" + bytes(range(256)) * 40
DATA_TEXT = "x,y\n1,2\n3,4\n"


@dataclass(frozen=True)
class Tracked:
    """A tracking store holding one promoted run in project ``digits``."""

    uri: str
    run: str
    folder: Path

    def blob_files(self) -> list[Path]:
        return sorted(p for p in (self.folder / "artifacts" / "blobs").rglob("*") if p.is_file())


def make_tracked(root: Path) -> Tracked:
    model = root / "model.bin"
    model.write_bytes(MODEL_BYTES)
    data = root / "train.csv"
    data.write_text(DATA_TEXT)
    extras = root / "extras"
    (extras / "sub").mkdir(parents=True)
    (extras / "a.txt").write_text("alpha")
    (extras / "sub" / "b.txt").write_text("beta")
    uri = str(root / "tracking")
    with tracking.init(project="digits", name="baseline", tracking_uri=uri) as run:
        tracking.log_params(lr=0.1)
        tracking.log_metrics(step=1, acc=0.8, loss=0.5)
        tracking.log_metrics(step=2, acc=0.95, loss=0.2)
        tracking.log_data_ref("train", path=data)
        tracking.log_model_ref(model, name="model")
        tracking.log_dir_ref(extras, name="extras")
        assert tracking.promote_to_artifact_version(when="acc >= 0.9") is not None
        assert tracking.promote_to_model_version(when="acc >= 0.9") is not None
    return Tracked(uri, run.uuid, root / "tracking")


@pytest.fixture
def tracked(tmp_path: Path) -> Tracked:
    return make_tracked(tmp_path)


def ensign(tracked: Tracked, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``ensign ARGS --tracking-uri URI`` in-process."""
    return CliRunner().invoke(cli, [*args, "--tracking-uri", tracked.uri], env=env)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def one_line_error(result: Result, code: int = 1) -> str:
    """Assert the command failed with exactly one ``error:`` line and no traceback."""
    assert result.exit_code == code, (result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


# register / get --------------------------------------------------------------------------


def test_register_without_a_run_stores_every_field(tracked: Tracked) -> None:
    created = as_json(
        ensign(
            tracked,
            "artifacts",
            "register",
            "-p",
            "digits",
            "--version",
            "rc1",
            "--description",
            "first candidate",
            "--tags",
            "a, b",
            "--content",
            '{"acc": 0.9, "notes": ["x"]}',
            "--json",
        )
    )
    assert created["name"] == "rc1"
    assert created["kind"] == "artifact"
    assert created["tags"] == ["a", "b"]
    assert created["content"] == {"acc": 0.9, "notes": ["x"]}
    assert created["manifest"] == {}
    got = as_json(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "rc1", "--json"))
    assert got["description"] == "first candidate"
    assert got["created_at"] == created["created_at"]
    assert got["created_at"].startswith(str(time.gmtime().tm_year))


def test_register_from_a_run_carries_the_named_artifacts(tracked: Tracked, tmp_path: Path) -> None:
    result = ok(
        ensign(
            tracked,
            "artifacts",
            "register",
            "-p",
            "digits",
            "--version",
            "just-model",
            "--run-uid",
            tracked.run,
            "--artifacts",
            "model",
        )
    )
    assert "registered artifact version just-model in digits (1 files" in result.stdout
    got = as_json(
        ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "just-model", "--json")
    )
    assert got["run"] == tracked.run
    assert got["artifacts"] == ["model"]
    assert list(got["manifest"]) == ["model/model.bin"]
    ok(ensign(tracked, "artifacts", "pull", "-p", "digits", "-ver", "just-model", "--path", "out"))
    assert (tmp_path / "out" / "model" / "model.bin").read_bytes() == MODEL_BYTES


def test_register_an_unknown_artifact_name_lists_the_known_ones(tracked: Tracked) -> None:
    line = one_line_error(
        ensign(
            tracked,
            "artifacts",
            "register",
            "-p",
            "digits",
            "--version",
            "x1",
            "--run-uid",
            tracked.run,
            "--artifacts",
            "nope",
        )
    )
    assert "'nope'" in line
    assert "model" in line
    assert "train" in line


def test_register_an_existing_version_needs_force(tracked: Tracked) -> None:
    line = one_line_error(
        ensign(tracked, "artifacts", "register", "-p", "digits", "--version", "v1")
    )
    assert "'v1' already exists" in line
    assert "--force" in line
    ok(
        ensign(
            tracked,
            "artifacts",
            "register",
            "-p",
            "digits",
            "--version",
            "v1",
            "--description",
            "replaced",
            "--force",
        )
    )
    got = as_json(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v1", "--json"))
    assert got["description"] == "replaced"


@pytest.mark.parametrize("name", ["bad name", "a/b", "x" * 129])
def test_register_an_invalid_version_name(tracked: Tracked, name: str) -> None:
    line = one_line_error(
        ensign(tracked, "artifacts", "register", "-p", "digits", "--version", name)
    )
    assert "version name" in line


@pytest.mark.parametrize(
    ("content", "words"),
    [('{"acc": ', "not valid JSON"), ("[1, 2]", "must be a JSON object, got list")],
)
def test_bad_content_is_a_usage_error_naming_the_option(
    tracked: Tracked, content: str, words: str
) -> None:
    line = one_line_error(
        ensign(tracked, "artifacts", "register", "--version", "c1", "--content", content), code=2
    )
    assert "--content" in line
    assert words in line


def test_get_shows_a_readable_record(tracked: Tracked) -> None:
    out = ok(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v1")).stdout
    record, files = out.split("\n\n", 1)
    fields = dict(line.split(None, 1) for line in record.splitlines())
    assert fields["name"].strip() == "v1"
    assert fields["stage"].strip() == "testing"
    assert fields["run"].strip() == tracked.run
    assert fields["files"].strip() == f"3 ({(len(MODEL_BYTES) + 9) / 1000:.1f} kB)"
    assert "model/model.bin" in files
    assert "extras/sub/b.txt" in files


def test_a_missing_version_is_one_line(tracked: Tracked) -> None:
    line = one_line_error(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v9"))
    assert "'v9'" in line
    assert "does not exist" in line


def test_a_missing_option_is_a_one_line_usage_error(tracked: Tracked) -> None:
    line = one_line_error(ensign(tracked, "artifacts", "get", "-p", "digits"), code=2)
    assert "Missing option '-ver' / '--version'" in line


def test_an_invalid_project_key_is_one_line(tracked: Tracked) -> None:
    line = one_line_error(ensign(tracked, "artifacts", "ls", "-p", "a/b/c"))
    assert "invalid project key 'a/b/c'" in line


def test_project_comes_from_the_environment(tracked: Tracked) -> None:
    result = ensign(tracked, "artifacts", "get", "-ver", "v1", "--json")
    one_line_error(result)  # project "default" has no v1
    got = as_json(
        ensign(
            tracked, "artifacts", "get", "-ver", "v1", "--json", env={"ENSIGN_PROJECT": "digits"}
        )
    )
    assert got["project"] == "digits"


# ls --------------------------------------------------------------------------------------


def test_ls_lists_versions_in_a_table_and_as_json(tracked: Tracked) -> None:
    ok(ensign(tracked, "artifacts", "register", "-p", "digits", "--version", "rc1", "--tags", "p"))
    table = ok(ensign(tracked, "artifacts", "ls", "-p", "digits")).stdout
    assert "v1" in table
    assert "rc1" in table
    assert "testing" in table
    listed = as_json(ensign(tracked, "artifacts", "ls", "-p", "digits", "--json"))
    assert [v["name"] for v in listed] == ["rc1", "v1"]  # newest first
    by_name = as_json(
        ensign(tracked, "artifacts", "ls", "-p", "digits", "--sort", "name", "--json")
    )
    assert [v["name"] for v in by_name] == ["rc1", "v1"]
    paged = as_json(
        ensign(
            tracked, "artifacts", "ls", "-p", "digits", "--limit", "1", "--offset", "1", "--json"
        )
    )
    assert [v["name"] for v in paged] == ["v1"]
    tagged = as_json(
        ensign(tracked, "artifacts", "ls", "-p", "digits", "--query", "tags:p", "--json")
    )
    assert [v["name"] for v in tagged] == ["rc1"]


def test_ls_of_nothing_says_so(tracked: Tracked) -> None:
    args = ("artifacts", "ls", "-p", "digits", "--query", "stage:disabled")
    assert ok(ensign(tracked, *args)).stdout.strip() == "no artifact versions"
    assert as_json(ensign(tracked, *args, "--json")) == []


def test_ls_of_an_unknown_project_is_one_line(tracked: Tracked) -> None:
    line = one_line_error(ensign(tracked, "artifacts", "ls", "-p", "nobody"))
    assert "project 'nobody' does not exist" in line


def test_ls_with_a_bad_query_is_one_line(tracked: Tracked) -> None:
    line = one_line_error(ensign(tracked, "artifacts", "ls", "-p", "digits", "--sort", "colour"))
    assert "colour" in line


# stage / stages --------------------------------------------------------------------------


def test_stage_records_the_change_and_its_reason(tracked: Tracked) -> None:
    result = ok(
        ensign(
            tracked,
            "artifacts",
            "stage",
            "-p",
            "digits",
            "-ver",
            "v1",
            "-to",
            "staging",
            "--reason",
            "CI",
            "--message",
            "all checks green",
        )
    )
    assert result.stdout.strip() == "artifact version v1 of digits is now staging"
    history = as_json(
        ensign(tracked, "artifacts", "stages", "-p", "digits", "-ver", "v1", "--json")
    )
    assert [c["type"] for c in history] == ["testing", "staging"]
    assert history[-1]["reason"] == "CI"
    assert history[-1]["message"] == "all checks green"
    table = ok(ensign(tracked, "artifacts", "stages", "-p", "digits", "-ver", "v1")).stdout
    assert "staging" in table
    assert "all checks green" in table
    staged = as_json(
        ensign(tracked, "artifacts", "ls", "-p", "digits", "--query", "stage:staging", "--json")
    )
    assert [v["name"] for v in staged] == ["v1"]


def test_an_unknown_stage_lists_the_valid_ones(tracked: Tracked) -> None:
    line = one_line_error(
        ensign(tracked, "artifacts", "stage", "-p", "digits", "-ver", "v1", "-to", "prod")
    )
    assert "unknown stage 'prod'" in line
    assert "testing, staging, production, disabled" in line


# update ----------------------------------------------------------------------------------


def test_update_changes_fields_and_renames(tracked: Tracked) -> None:
    ok(
        ensign(
            tracked,
            "artifacts",
            "update",
            "-p",
            "digits",
            "-ver",
            "v1",
            "--description",
            "better",
            "--tags",
            "prod,small",
            "--content",
            '{"k": 1}',
            "--name",
            "final",
        )
    )
    got = as_json(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "final", "--json"))
    assert (got["description"], got["tags"], got["content"]) == (
        "better",
        ["prod", "small"],
        {"k": 1},
    )
    one_line_error(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v1"))
    ok(ensign(tracked, "artifacts", "update", "-p", "digits", "-ver", "final", "--tags", ""))
    got = as_json(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "final", "--json"))
    assert got["tags"] == []


def test_update_with_nothing_to_change_is_a_usage_error(tracked: Tracked) -> None:
    line = one_line_error(
        ensign(tracked, "artifacts", "update", "-p", "digits", "-ver", "v1"), code=2
    )
    assert "nothing to update" in line


def test_rename_onto_a_taken_name_is_refused(tracked: Tracked) -> None:
    ok(ensign(tracked, "artifacts", "register", "-p", "digits", "--version", "rc1"))
    line = one_line_error(
        ensign(tracked, "artifacts", "update", "-p", "digits", "-ver", "v1", "--name", "rc1")
    )
    assert "'rc1' already exists" in line


# delete ----------------------------------------------------------------------------------


def test_delete_with_yes_removes_the_version(tracked: Tracked) -> None:
    result = ok(ensign(tracked, "artifacts", "delete", "-p", "digits", "-ver", "v1", "-y"))
    assert result.stdout.strip() == "deleted artifact version v1 of digits"
    one_line_error(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v1"))


def test_delete_without_yes_and_without_a_terminal_refuses(tracked: Tracked) -> None:
    result = CliRunner().invoke(
        cli,
        ["artifacts", "delete", "-p", "digits", "-ver", "v1", "--tracking-uri", tracked.uri],
        input="y\n",
    )
    line = one_line_error(result)
    assert "pass -y/--yes" in line
    ok(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v1"))


def test_delete_a_missing_version_is_one_line(tracked: Tracked) -> None:
    line = one_line_error(
        ensign(tracked, "artifacts", "delete", "-p", "digits", "-ver", "v7", "-y")
    )
    assert "'v7' does not exist" in line


# pull ------------------------------------------------------------------------------------


def test_pull_writes_and_verifies_every_file(tracked: Tracked, tmp_path: Path) -> None:
    result = ok(ensign(tracked, "artifacts", "pull", "-p", "digits", "-ver", "v1", "--path", "out"))
    assert result.stdout.startswith("pulled artifact version v1 of digits to out (3 files")
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    out = tmp_path / "out"
    assert (out / "model" / "model.bin").read_bytes() == MODEL_BYTES
    assert (out / "extras" / "a.txt").read_text() == "alpha"
    assert (out / "extras" / "sub" / "b.txt").read_text() == "beta"
    record = json.loads((out / ".ensign-version.json").read_text())
    assert (record["name"], record["run"]) == ("v1", tracked.run)


def test_pull_json_and_no_artifacts(tracked: Tracked, tmp_path: Path) -> None:
    pull = ("artifacts", "pull", "-p", "digits", "-ver", "v1")
    summary = as_json(ensign(tracked, *pull, "--path", "meta", "--no-artifacts", "--json"))
    assert summary == {"path": "meta", "files": 0, "bytes": 0}
    assert [p.name for p in (tmp_path / "meta").iterdir()] == [".ensign-version.json"]
    summary = as_json(
        ensign(
            tracked, "artifacts", "pull", "-p", "digits", "-ver", "v1", "--path", "all", "--json"
        )
    )
    assert summary["files"] == 3
    assert summary["bytes"] == len(MODEL_BYTES) + len("alpha") + len("beta")


def test_pull_into_a_non_empty_folder_needs_force(tracked: Tracked, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    args = ("artifacts", "pull", "-p", "digits", "-ver", "v1", "--path", "busy")
    line = one_line_error(ensign(tracked, *args))
    assert "not empty" in line
    assert "--force" in line
    assert not (tmp_path / "busy" / "model").exists()
    ok(ensign(tracked, *args, "--force"))
    assert (tmp_path / "busy" / "model" / "model.bin").read_bytes() == MODEL_BYTES
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_pull_of_a_corrupted_blob_names_the_file(tracked: Tracked, tmp_path: Path) -> None:
    model_blob = next(p for p in tracked.blob_files() if p.stat().st_size == len(MODEL_BYTES))
    model_blob.write_bytes(b"tampered" + MODEL_BYTES[8:])
    line = one_line_error(
        ensign(tracked, "artifacts", "pull", "-p", "digits", "-ver", "v1", "--path", "out")
    )
    assert "digest mismatch for model/model.bin" in line
    assert not (tmp_path / "out" / "model" / "model.bin").exists()


# copy / transfer / lineage ---------------------------------------------------------------


def test_copy_in_the_same_project_takes_the_next_number(tracked: Tracked) -> None:
    result = ok(ensign(tracked, "artifacts", "copy", "-p", "digits", "-ver", "v1"))
    assert result.stdout.strip() == "copied artifact version v1 of digits to v2 of digits"
    copied = as_json(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v2", "--json"))
    original = as_json(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v1", "--json"))
    assert copied["manifest"] == original["manifest"]
    assert copied["content"]["copied_from"] == "digits:v1"


def test_copy_to_another_project_with_a_name(tracked: Tracked, tmp_path: Path) -> None:
    args = ("artifacts", "copy", "-p", "digits", "-ver", "v1", "--to-project", "team/prod")
    copied = as_json(ensign(tracked, *args, "--name", "golden", "--json"))
    assert (copied["project"], copied["name"]) == ("team/prod", "golden")
    line = one_line_error(ensign(tracked, *args, "--name", "golden"))
    assert "'golden' already exists" in line
    ok(ensign(tracked, *args, "--name", "golden", "--force"))
    table = ok(ensign(tracked, "artifacts", "ls", "-p", "team/prod")).stdout
    assert "golden" in table
    ok(ensign(tracked, "artifacts", "pull", "-p", "team/prod", "-ver", "golden", "--path", "g"))
    assert (tmp_path / "g" / "model" / "model.bin").read_bytes() == MODEL_BYTES


def test_transfer_moves_a_version_with_its_history(tracked: Tracked) -> None:
    ok(ensign(tracked, "artifacts", "stage", "-p", "digits", "-ver", "v1", "-to", "production"))
    result = ok(
        ensign(tracked, "artifacts", "transfer", "-p", "digits", "-ver", "v1", "--to-project", "b")
    )
    assert result.stdout.strip() == "moved artifact version v1 from digits to b"
    one_line_error(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v1"))
    moved = as_json(ensign(tracked, "artifacts", "get", "-p", "b", "-ver", "v1", "--json"))
    assert moved["stage"] == "production"
    assert [c["type"] for c in moved["stage_conditions"]] == ["testing", "production"]


def test_transfer_needs_a_target(tracked: Tracked) -> None:
    line = one_line_error(
        ensign(tracked, "artifacts", "transfer", "-p", "digits", "-ver", "v1"), code=2
    )
    assert "--to-project" in line


def test_lineage_shows_inputs_and_carried_outputs(tracked: Tracked) -> None:
    refs = as_json(ensign(tracked, "artifacts", "lineage", "-p", "digits", "-ver", "v1", "--json"))
    by_name = {r["name"]: r for r in refs}
    assert set(by_name) == {"train", "model", "extras"}
    assert by_name["train"]["is_input"] is True
    assert by_name["model"]["is_input"] is False
    assert by_name["model"]["size"] == len(MODEL_BYTES)
    table = ok(ensign(tracked, "artifacts", "lineage", "-p", "digits", "-ver", "v1")).stdout
    assert "input" in table
    assert "train" in table
    assert "model" in table


# models: the same commands for model versions --------------------------------------------


def test_models_commands_work_on_model_versions(tracked: Tracked, tmp_path: Path) -> None:
    got = as_json(ensign(tracked, "models", "get", "-p", "digits", "-ver", "v1", "--json"))
    assert got["kind"] == "model"
    ok(ensign(tracked, "models", "register", "-p", "digits", "--version", "m-rc", "--tags", "t"))
    assert "m-rc" in ok(ensign(tracked, "models", "ls", "-p", "digits")).stdout
    artifacts = as_json(ensign(tracked, "artifacts", "ls", "-p", "digits", "--json"))
    assert [v["name"] for v in artifacts] == ["v1"]  # the kinds are separate
    ok(ensign(tracked, "models", "stage", "-p", "digits", "-ver", "v1", "-to", "production"))
    prod = as_json(
        ensign(tracked, "models", "ls", "-p", "digits", "--query", "stage:production", "--json")
    )
    assert [v["name"] for v in prod] == ["v1"]
    artifact = as_json(ensign(tracked, "artifacts", "get", "-p", "digits", "-ver", "v1", "--json"))
    assert artifact["stage"] == "testing"
    ok(ensign(tracked, "models", "pull", "-p", "digits", "-ver", "v1", "--path", "m"))
    assert (tmp_path / "m" / "model" / "model.bin").read_bytes() == MODEL_BYTES
    refs = as_json(ensign(tracked, "models", "lineage", "-p", "digits", "-ver", "v1", "--json"))
    assert {r["name"] for r in refs} == {"train", "model", "extras"}
    ok(ensign(tracked, "models", "delete", "-p", "digits", "-ver", "m-rc", "-y"))
    line = one_line_error(ensign(tracked, "models", "get", "-p", "digits", "-ver", "m-rc"))
    assert "model version 'm-rc'" in line


def test_models_copy_and_transfer(tracked: Tracked) -> None:
    ok(ensign(tracked, "models", "copy", "-p", "digits", "-ver", "v1"))
    transfer = ("models", "transfer", "-p", "digits", "-ver", "v2", "--to-project", "o")
    moved = as_json(ensign(tracked, *transfer, "--json"))
    assert (moved["project"], moved["kind"], moved["name"]) == ("o", "model", "v2")
