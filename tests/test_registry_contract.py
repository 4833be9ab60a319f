"""The Registry contract, run against SqlRegistry on SQLite and on PostgreSQL."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from ensign.errors import (
    Conflict,
    InvalidName,
    InvalidQuery,
    InvalidStage,
    ProjectNotFound,
    RunNotFound,
    VersionExists,
    VersionNotFound,
)
from ensign.records import ArtifactRef, PromotionDecision, RunStatus, Stages
from ensign.registry.base import RunBatch, VersionSpec
from ensign.registry.sql import SqlRegistry
from ensign.storage.blobstore import BlobStore

INF = math.inf
D1 = "1" * 64
D2 = "2" * 64
D3 = "3" * 64


# Over REST a version's blobs must be in the store (the server checks, DESIGN §4.4), so
# the server's store holds D1..D3 (as bytes that are not theirs: only presence counts),
# and versions name that store (see the ``store_uri`` fixture).


@pytest.fixture(scope="module")
def rest_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One ``ensign server`` per database kind for the module, started on first use."""
    from conftest import create_postgres_database, drop_postgres_database
    from serving import run_ensign, start_server

    started: dict[str, Any] = {}

    def server(kind: str) -> Any:
        if kind not in started:
            folder = tmp_path_factory.mktemp(f"rest-{kind}")
            if kind == "sqlite":
                url = f"sqlite:///{folder / 'registry.db'}"
            else:
                url = create_postgres_database()
                upgraded = run_ensign("db", "upgrade", "--tracking-uri", url)
                assert upgraded.returncode == 0, upgraded.stderr
            blobs = BlobStore(str(folder / "blobs"))
            for digest in (D1, D2, D3):
                blobs.fs.makedirs(blobs.blob_path(digest).rsplit("/", 1)[0], exist_ok=True)
                blobs.fs.pipe_file(blobs.blob_path(digest), digest.encode())
            live = start_server(folder, tracking_uri=url, artifacts_uri=str(folder / "blobs"))
            started[kind] = (live, sa.create_engine(url), url)
        return started[kind]

    yield {"server": server}
    for live, engine, url in started.values():
        live.stop()
        engine.dispose()
        if not url.startswith("sqlite"):
            drop_postgres_database(url)


def _wipe(engine: sa.Engine) -> None:
    """Empty every table but the tokens: each test starts with a fresh registry."""
    from ensign.registry.sql.schema import metadata, tokens

    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            if table is not tokens:
                conn.execute(table.delete())


@pytest.fixture(params=["sql", "rest"])
def registry(
    request: pytest.FixtureRequest, database_url: str, rest_servers: dict[str, Any]
) -> Iterator[Any]:
    """The SqlRegistry on a fresh database, then a RestRegistry on a live server.

    Over REST the server's database is emptied before each test, and ``engine`` (which
    tests use to look at the rows) is that database.
    """
    if request.param == "sql":
        reg = SqlRegistry(database_url)
    else:
        from ensign.registry.rest import RestRegistry

        kind = "sqlite" if database_url.startswith("sqlite") else "postgres"
        live, engine, _url = rest_servers["server"](kind)
        _wipe(engine)
        reg = RestRegistry(live.url, live.token)
        reg.engine = engine
        reg.served_store = (live.log.parent / "blobs").as_uri()
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def store_uri(registry: Any) -> str:
    """The store versions name: any for the SQL registry, the server's own over REST."""
    return str(getattr(registry, "served_store", "file:///store"))


def make_ref(run: str, name: str, *, is_input: bool = False, **extra: Any) -> ArtifactRef:
    fields: dict[str, Any] = {
        "kind": "file",
        "uri": f"/data/{name}",
        "digest": None,
        "size": None,
        "summary": {},
    }
    fields.update(extra)
    return ArtifactRef(run=run, name=name, is_input=is_input, **fields)


def decision(promoted: bool, *, dry_run: bool = False, minute: int = 0) -> PromotionDecision:
    return PromotionDecision(
        promoted=promoted,
        version=None,
        reasons=[f"acc >= 0.9: 0.95 (minute {minute})"],
        evaluated_at=datetime(2024, 5, 1, 12, minute, tzinfo=timezone.utc),
        dry_run=dry_run,
    )


def spec(name: str | None = None, **fields: Any) -> VersionSpec:
    return VersionSpec(name=name, **fields)


def names(items: list[Any]) -> list[str]:
    return [i.name for i in items]


# --- projects -------------------------------------------------------------------------


def test_create_project_returns_it_with_an_id(registry: SqlRegistry) -> None:
    project = registry.create_project("org/digits", "handwritten digits")
    assert project.key == "org/digits"
    assert project.description == "handwritten digits"
    assert re.fullmatch(r"[0-9a-f]{32}", project.id)
    assert project.created_at.tzinfo is not None
    assert abs(project.created_at - datetime.now(timezone.utc)) < timedelta(minutes=5)


def test_create_project_twice_is_a_conflict(registry: SqlRegistry) -> None:
    registry.create_project("digits")
    with pytest.raises(Conflict, match="'digits' already exists"):
        registry.create_project("digits")


def test_ensure_project_is_idempotent(registry: SqlRegistry) -> None:
    first = registry.ensure_project("org/digits")
    second = registry.ensure_project("org/digits")
    assert first == second
    assert [p.key for p in registry.list_projects()] == ["org/digits"]


def test_get_project_by_key_and_by_id(registry: SqlRegistry) -> None:
    created = registry.create_project("digits", "d")
    assert registry.get_project("digits") == created
    assert registry.get_project(created.id) == created


def test_list_projects_is_sorted_by_key(registry: SqlRegistry) -> None:
    for key in ("zeta", "alpha", "org/mid"):
        registry.create_project(key)
    assert [p.key for p in registry.list_projects()] == ["alpha", "org/mid", "zeta"]


def test_missing_project_is_not_found(registry: SqlRegistry) -> None:
    with pytest.raises(ProjectNotFound, match="'nope' does not exist"):
        registry.get_project("nope")
    with pytest.raises(ProjectNotFound):
        registry.list_runs("nope")
    with pytest.raises(ProjectNotFound):
        registry.list_versions("nope", "artifact")
    with pytest.raises(ProjectNotFound):
        registry.get_version("nope", "artifact", "v1")


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "non-empty"),
        ("a/b/c", "'name' or 'owner/name'"),
        ("has space", "letters, digits"),
        ("org/", "'name' or 'owner/name'"),
        ("caf\u00e9!", "letters, digits"),
        ("x" * 129, "at most 128"),
        ("org/..", "'.' and '..' are not names"),
    ],
)
def test_invalid_project_keys_are_refused_with_the_rule(
    registry: SqlRegistry, key: str, rule: str
) -> None:
    for create in (registry.create_project, registry.ensure_project):
        with pytest.raises(InvalidName, match=re.escape(rule)):
            create(key)
    with pytest.raises(InvalidName, match=re.escape(rule)):
        registry.create_run(key)
    assert registry.list_projects() == []


# --- runs -----------------------------------------------------------------------------


def test_create_and_get_run(registry: SqlRegistry) -> None:
    run = registry.create_run(
        "digits",
        name="baseline",
        description="first try",
        tags=["a", "b"],
        environment={"python": "3.12"},
    )
    assert re.fullmatch(r"[0-9a-f]{32}", run.uuid)
    assert run.project == "digits"
    assert run.name == "baseline"
    assert run.description == "first try"
    assert run.status == RunStatus.RUNNING.value
    assert run.tags == ["a", "b"]
    assert run.environment == {"python": "3.12"}
    assert run.params == {}
    assert run.outputs == {}
    assert run.ended_at is None
    assert run.is_promoted is False
    assert registry.get_run(run.uuid) == run
    # The project was created on the way.
    assert registry.get_project("digits").key == "digits"


def test_set_run_status_and_end(registry: SqlRegistry) -> None:
    run = registry.create_run("digits")
    registry.set_run_status(run.uuid, "failed")
    assert registry.get_run(run.uuid).status == "failed"
    assert registry.get_run(run.uuid).ended_at is None
    registry.set_run_status(run.uuid, "succeeded", ended=True)
    ended = registry.get_run(run.uuid)
    assert ended.status == "succeeded"
    assert ended.ended_at is not None
    assert ended.ended_at >= ended.started_at


def test_missing_run_is_not_found_everywhere(registry: SqlRegistry) -> None:
    missing = "f" * 32
    calls = [
        lambda: registry.get_run(missing),
        lambda: registry.set_run_status(missing, "failed"),
        lambda: registry.write_batch(RunBatch(missing, metrics=[("loss", 0, 1.0, 0.0)])),
        lambda: registry.write_batch(RunBatch(missing, params={"lr": 1})),
        lambda: registry.write_batch(RunBatch(missing, refs=[make_ref(missing, "x")])),
        lambda: registry.last_steps(missing),
        lambda: registry.get_metrics(missing),
        lambda: registry.list_refs(missing),
        lambda: registry.record_decision(missing, decision(True)),
        lambda: registry.list_decisions(missing),
    ]
    for call in calls:
        with pytest.raises(RunNotFound, match=missing):
            call()
    # Nothing of the failed batches was written.
    registry.create_run("digits")
    with registry.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM metrics").scalar() == 0
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM params").scalar() == 0


@pytest.fixture
def three_runs(registry: SqlRegistry) -> dict[str, str]:
    a = registry.create_run("digits", name="alpha", tags=["prod", "cnn"])
    b = registry.create_run("digits", name="beta", tags=["dev"])
    c = registry.create_run("digits", name="gamma", tags=["prod"])
    registry.create_run("other", name="alpha", tags=["prod"])
    registry.set_run_status(b.uuid, "failed", ended=True)
    return {"alpha": a.uuid, "beta": b.uuid, "gamma": c.uuid}


def test_list_runs_newest_first_by_default(
    registry: SqlRegistry, three_runs: dict[str, str]
) -> None:
    assert names(registry.list_runs("digits")) == ["gamma", "beta", "alpha"]


def test_list_runs_queries(registry: SqlRegistry, three_runs: dict[str, str]) -> None:
    assert names(registry.list_runs("digits", query="status:failed")) == ["beta"]
    assert names(registry.list_runs("digits", query="status:running", sort="name")) == [
        "alpha",
        "gamma",
    ]
    assert names(registry.list_runs("digits", query="tags:prod", sort="name")) == [
        "alpha",
        "gamma",
    ]
    assert names(registry.list_runs("digits", query="tags:cnn|dev", sort="name")) == [
        "alpha",
        "beta",
    ]
    assert names(registry.list_runs("digits", query="name:alpha|beta", sort="name")) == [
        "alpha",
        "beta",
    ]
    assert names(registry.list_runs("digits", query="name:~alpha", sort="name")) == [
        "beta",
        "gamma",
    ]
    assert names(registry.list_runs("digits", query="tags:prod, status:running", sort="-name")) == [
        "gamma",
        "alpha",
    ]
    assert registry.list_runs("digits", query="tags:pro") == []


def test_tag_query_matches_whole_tags_only(registry: SqlRegistry) -> None:
    registry.create_run("digits", name="plain", tags=["abc", "100"])
    registry.create_run("digits", name="wild", tags=["a_c", "1%0"])
    # '_' and '%' are characters of a tag, not wildcards.
    assert names(registry.list_runs("digits", query="tags:a_c")) == ["wild"]
    assert names(registry.list_runs("digits", query="tags:1%0")) == ["wild"]
    assert names(registry.list_runs("digits", query="tags:abc")) == ["plain"]


def test_list_runs_sort_limit_offset(registry: SqlRegistry, three_runs: dict[str, str]) -> None:
    assert names(registry.list_runs("digits", sort="name")) == ["alpha", "beta", "gamma"]
    assert names(registry.list_runs("digits", sort="-name")) == ["gamma", "beta", "alpha"]
    assert names(registry.list_runs("digits", sort="started_at")) == ["alpha", "beta", "gamma"]
    assert names(registry.list_runs("digits", sort="name", limit=2)) == ["alpha", "beta"]
    assert names(registry.list_runs("digits", sort="name", limit=2, offset=2)) == ["gamma"]
    assert registry.list_runs("digits", sort="name", offset=3) == []


def test_list_runs_refuses_bad_queries(registry: SqlRegistry, three_runs: dict[str, str]) -> None:
    with pytest.raises(InvalidQuery, match="unknown query field 'colour'") as info:
        registry.list_runs("digits", query="colour:red")
    for known in ("name", "status", "tags", "is_promoted", "uuid"):
        assert known in str(info.value)
    with pytest.raises(InvalidQuery, match="malformed query term 'status'"):
        registry.list_runs("digits", query="status")
    with pytest.raises(InvalidQuery, match="cannot sort by 'colour'; sortable fields: "):
        registry.list_runs("digits", sort="colour")
    with pytest.raises(InvalidQuery, match="must not be negative"):
        registry.list_runs("digits", limit=-1)
    with pytest.raises(InvalidQuery, match="must not be negative"):
        registry.list_runs("digits", offset=-1)


def test_list_runs_by_promotion(registry: SqlRegistry, three_runs: dict[str, str]) -> None:
    registry.record_decision(three_runs["beta"], decision(True))
    assert names(registry.list_runs("digits", query="is_promoted:true")) == ["beta"]
    assert names(registry.list_runs("digits", query="is_promoted:false", sort="name")) == [
        "alpha",
        "gamma",
    ]


# --- write_batch ----------------------------------------------------------------------


def test_metrics_round_trip_including_nan_and_infinities(registry: SqlRegistry) -> None:
    run = registry.create_run("digits").uuid
    registry.write_batch(
        RunBatch(
            run,
            metrics=[
                ("loss", 0, 0.5, 100.0),
                ("loss", 1, math.nan, 101.0),
                ("loss", 2, INF, 102.0),
                ("loss", 3, -INF, 103.0),
                ("acc", 0, 0.25, 100.5),
            ],
        )
    )
    found = registry.get_metrics(run)
    assert set(found) == {"loss", "acc"}
    loss = found["loss"]
    assert [p.step for p in loss] == [0, 1, 2, 3]
    assert loss[0].value == 0.5
    assert math.isnan(loss[1].value)
    assert loss[2].value == INF
    assert loss[3].value == -INF
    assert [p.timestamp for p in loss] == [100.0, 101.0, 102.0, 103.0]
    assert found["acc"][0].value == 0.25
    # NaN is stored as NULL (one form on both databases).
    with registry.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT value FROM metrics WHERE step = 1").scalar()
    assert stored is None


def test_get_metrics_in_step_order_and_filtered(registry: SqlRegistry) -> None:
    run = registry.create_run("digits").uuid
    registry.write_batch(RunBatch(run, metrics=[("loss", 5, 0.1, 5.0), ("acc", 1, 0.5, 1.0)]))
    registry.write_batch(RunBatch(run, metrics=[("loss", 2, 0.4, 6.0), ("lr", 0, 1e-3, 0.0)]))
    registry.write_batch(RunBatch(run, metrics=[("loss", 3, 0.3, 7.0)]))
    assert [p.step for p in registry.get_metrics(run)["loss"]] == [2, 3, 5]
    only = registry.get_metrics(run, names=["loss", "acc", "never-logged"])
    assert set(only) == {"loss", "acc"}
    assert registry.get_metrics(run, names=[]) == {}
    assert registry.last_steps(run) == {"loss": 5, "acc": 1, "lr": 0}
    other = registry.create_run("digits").uuid
    assert registry.get_metrics(other) == {}
    assert registry.last_steps(other) == {}


def test_params_replace_by_key(registry: SqlRegistry) -> None:
    run = registry.create_run("digits").uuid
    registry.write_batch(RunBatch(run, params={"lr": 0.1, "batch": 32, "layers": [64, 32]}))
    registry.write_batch(RunBatch(run, params={"lr": 0.2, "opt": {"name": "adam"}}))
    assert registry.get_run(run).params == {
        "lr": 0.2,
        "batch": 32,
        "layers": [64, 32],
        "opt": {"name": "adam"},
    }


def test_outputs_and_environment_merge(registry: SqlRegistry) -> None:
    run = registry.create_run("digits", environment={"python": "3.12"}).uuid
    registry.write_batch(RunBatch(run, outputs={"score": 1}, environment={"host": "h1"}))
    registry.write_batch(RunBatch(run, outputs={"score": 2, "n": 3}))
    got = registry.get_run(run)
    assert got.outputs == {"score": 2, "n": 3}
    assert got.environment == {"python": "3.12", "host": "h1"}


def test_tags_are_deduplicated_in_order(registry: SqlRegistry) -> None:
    run = registry.create_run("digits", tags=["a"]).uuid
    registry.write_batch(RunBatch(run, tags=["b", "a", "b", "c"]))
    registry.write_batch(RunBatch(run, tags=["c", "d"]))
    assert registry.get_run(run).tags == ["a", "b", "c", "d"]


def test_empty_batch_writes_nothing(registry: SqlRegistry) -> None:
    registry.write_batch(RunBatch("f" * 32))  # nothing to write: not even a lookup


def test_refs_replace_by_name_and_direction(registry: SqlRegistry, store_uri: str) -> None:
    run = registry.create_run("digits").uuid
    registry.write_batch(
        RunBatch(
            run,
            refs=[
                make_ref(run, "data", is_input=True, kind="data", digest=D1, size=10),
                make_ref(run, "data", is_input=False, kind="data", digest=D2, size=20),
                make_ref(run, "model", kind="model", summary={"acc": 0.9}),
            ],
        )
    )
    registry.write_batch(
        RunBatch(
            run,
            refs=[
                make_ref(
                    run,
                    "model",
                    kind="model",
                    digest=D3,
                    size=30,
                    store_uri=store_uri,
                    manifest={"model.pkl": {"digest": D3, "size": 30}},
                )
            ],
        )
    )
    refs = registry.list_refs(run)
    assert [(r.name, r.is_input) for r in refs] == [
        ("data", True),
        ("data", False),
        ("model", False),
    ]
    data_in, data_out, model = refs
    assert (data_in.digest, data_in.size) == (D1, 10)
    assert (data_out.digest, data_out.size) == (D2, 20)
    assert model.digest == D3
    assert model.summary == {}
    assert model.store_uri == store_uri
    assert model.manifest == {"model.pkl": {"digest": D3, "size": 30}}
    assert model.run == run
    assert registry.list_refs(registry.create_run("digits").uuid) == []


# --- decisions ------------------------------------------------------------------------


def test_decisions_are_kept_oldest_first(registry: SqlRegistry) -> None:
    run = registry.create_run("digits").uuid
    first = decision(False, minute=1)
    dry = decision(True, dry_run=True, minute=2)
    registry.record_decision(run, first)
    registry.record_decision(run, dry)
    assert registry.list_decisions(run) == [first, dry]
    # Neither a refusal nor a dry run marks the run promoted.
    assert registry.get_run(run).is_promoted is False
    promoted = decision(True, minute=3)
    registry.record_decision(run, promoted)
    assert registry.list_decisions(run)[-1] == promoted
    assert registry.get_run(run).is_promoted is True


# --- versions -------------------------------------------------------------------------


def test_create_named_version(registry: SqlRegistry, store_uri: str) -> None:
    run = registry.create_run("digits").uuid
    created = registry.create_version(
        "digits",
        "model",
        spec(
            "rc1",
            description="first",
            tags=["prod"],
            content={"framework": "sklearn"},
            run=run,
            artifacts=["model"],
            manifest={"model.pkl": {"digest": D1, "size": 5}},
            store_uri=store_uri,
        ),
    )
    assert created.project == "digits"
    assert created.kind == "model"
    assert created.name == "rc1"
    assert created.description == "first"
    assert created.tags == ["prod"]
    assert created.content == {"framework": "sklearn"}
    assert created.run == run
    assert created.artifacts == ["model"]
    assert created.manifest == {"model.pkl": {"digest": D1, "size": 5}}
    assert created.store_uri == store_uri
    assert created.stage == Stages.TESTING.value
    assert [c.type for c in created.stage_conditions] == ["testing"]
    assert created.evaluation is None
    assert created.created_at == created.updated_at
    assert registry.get_version("digits", "model", "rc1") == created
    # Kinds are separate namespaces.
    with pytest.raises(VersionNotFound, match="artifact version 'rc1' does not exist"):
        registry.get_version("digits", "artifact", "rc1")


def test_unnamed_versions_get_the_next_number(registry: SqlRegistry) -> None:
    got = [registry.create_version("digits", "artifact", spec()).name for _ in range(3)]
    assert got == ["v1", "v2", "v3"]
    # Named versions take no number; a taken vN is skipped.
    registry.create_version("digits", "artifact", spec("best"))
    registry.create_version("digits", "artifact", spec("v4"))
    assert registry.create_version("digits", "artifact", spec()).name == "v5"
    # Each kind and each project counts on its own.
    assert registry.create_version("digits", "model", spec()).name == "v1"
    assert registry.create_version("other", "artifact", spec()).name == "v1"


def test_first_stage_can_be_given(registry: SqlRegistry) -> None:
    created = registry.create_version(
        "digits", "model", spec(stage="staging", stage_reason="ci", stage_message="green")
    )
    assert created.stage == "staging"
    (condition,) = created.stage_conditions
    assert (condition.type, condition.status, condition.reason, condition.message) == (
        "staging",
        "True",
        "ci",
        "green",
    )


def test_existing_version_without_force_names_it(registry: SqlRegistry) -> None:
    registry.create_version("digits", "artifact", spec("rc1", description="kept"))
    with pytest.raises(VersionExists, match=r"'rc1' already exists in 'digits'.*force=True"):
        registry.create_version("digits", "artifact", spec("rc1", description="lost"))
    assert registry.get_version("digits", "artifact", "rc1").description == "kept"


def test_force_replaces_fields_in_place_and_keeps_history(registry: SqlRegistry) -> None:
    original = registry.create_version(
        "digits",
        "artifact",
        spec("rc1", description="old", tags=["a"], manifest={"f": {"digest": D1, "size": 1}}),
    )
    registry.stage_version("digits", "artifact", "rc1", "staging", reason="review")
    replaced = registry.create_version(
        "digits",
        "artifact",
        spec("rc1", description="new", tags=["b"], manifest={"g": {"digest": D2, "size": 2}}),
        force=True,
    )
    assert replaced.description == "new"
    assert replaced.tags == ["b"]
    assert replaced.manifest == {"g": {"digest": D2, "size": 2}}
    assert replaced.created_at == original.created_at
    assert replaced.updated_at > original.updated_at
    assert replaced.stage == "staging"
    assert [c.type for c in replaced.stage_conditions] == ["testing", "staging"]
    assert len(registry.list_versions("digits", "artifact")) == 1
    # A forced stage that differs is a stage change recorded in the history.
    moved = registry.create_version(
        "digits", "artifact", spec("rc1", stage="production"), force=True
    )
    assert moved.stage == "production"
    assert [c.type for c in moved.stage_conditions] == ["testing", "staging", "production"]


def test_version_with_a_decision_records_it_on_the_run(registry: SqlRegistry) -> None:
    run = registry.create_run("digits").uuid
    made = registry.create_version("digits", "model", spec(run=run, decision=decision(True)))
    (recorded,) = registry.list_decisions(run)
    assert recorded.version == made.name == "v1"
    assert recorded.promoted is True
    assert registry.get_run(run).is_promoted is True


def test_a_failed_version_transaction_leaves_nothing(registry: SqlRegistry) -> None:
    missing = "f" * 32
    with pytest.raises(RunNotFound):
        registry.create_version("new", "model", spec(run=missing, decision=decision(True)))
    # Not even the project the version would have created.
    with pytest.raises(ProjectNotFound):
        registry.get_project("new")
    registry.create_project("digits")
    with pytest.raises(RunNotFound):
        registry.create_version("digits", "model", spec(run=missing, decision=decision(True)))
    assert registry.list_versions("digits", "model") == []
    # The number was not consumed either.
    assert registry.create_version("digits", "model", spec()).name == "v1"


def test_invalid_version_names(registry: SqlRegistry) -> None:
    for bad, rule in [
        ("has space", "letters, digits"),
        ("x" * 129, "at most 128"),
        ("..", "letters, digits"),
        ("a/b", "letters, digits"),
    ]:
        with pytest.raises(InvalidName, match=re.escape(rule)):
            registry.create_version("digits", "artifact", spec(bad))
    assert registry.create_version("digits", "artifact", spec("x" * 128)).name == "x" * 128


@pytest.fixture
def versions(registry: SqlRegistry) -> None:
    registry.create_version("digits", "artifact", spec(tags=["prod", "big"]))  # v1
    registry.create_version("digits", "artifact", spec(tags=["dev"]))  # v2
    registry.create_version("digits", "artifact", spec(tags=["prod"]))  # v3
    registry.create_version("digits", "model", spec(tags=["prod"]))  # a model v1
    registry.stage_version("digits", "artifact", "v1", "production")
    registry.stage_version("digits", "artifact", "v2", "staging")


def test_list_versions_newest_first(registry: SqlRegistry, versions: None) -> None:
    assert names(registry.list_versions("digits", "artifact")) == ["v3", "v2", "v1"]
    assert names(registry.list_versions("digits", "model")) == ["v1"]


def test_list_versions_queries(registry: SqlRegistry, versions: None) -> None:
    def listed(query: str) -> list[str]:
        return names(registry.list_versions("digits", "artifact", query=query, sort="name"))

    assert listed("stage:production") == ["v1"]
    assert listed("stage:testing|staging") == ["v2", "v3"]
    assert listed("stage:PRODUCTION") == ["v1"]
    assert listed("tags:prod") == ["v1", "v3"]
    assert listed("tags:big|dev") == ["v1", "v2"]
    assert listed("name:v1|v2") == ["v1", "v2"]
    assert listed("name:~v1") == ["v2", "v3"]
    assert listed("tags:prod, stage:testing") == ["v3"]
    assert listed("name:v9") == []


def test_list_versions_sort_limit_offset(registry: SqlRegistry, versions: None) -> None:
    def listed(**kw: Any) -> list[str]:
        return names(registry.list_versions("digits", "artifact", **kw))

    assert listed(sort="name") == ["v1", "v2", "v3"]
    assert listed(sort="-name") == ["v3", "v2", "v1"]
    assert listed(sort="created_at") == ["v1", "v2", "v3"]
    assert listed(sort="-updated_at") == ["v2", "v1", "v3"]
    assert listed(sort="stage") == ["v1", "v2", "v3"]  # production < staging < testing
    assert listed(sort="name", limit=1) == ["v1"]
    assert listed(sort="name", limit=2, offset=1) == ["v2", "v3"]
    assert listed(sort="name", limit=0) == []


def test_list_versions_refuses_bad_queries(registry: SqlRegistry, versions: None) -> None:
    with pytest.raises(InvalidQuery, match="unknown query field 'colour'") as info:
        registry.list_versions("digits", "artifact", query="colour:red")
    for known in ("name", "stage", "tags", "run"):
        assert known in str(info.value)
    with pytest.raises(InvalidStage, match="'prod'; valid stages: testing, staging"):
        registry.list_versions("digits", "artifact", query="stage:prod")
    with pytest.raises(InvalidQuery, match="cannot sort by 'size'"):
        registry.list_versions("digits", "artifact", sort="size")
    with pytest.raises(InvalidQuery, match="must not be negative"):
        registry.list_versions("digits", "artifact", limit=-5)


def test_stage_changes_keep_their_history(registry: SqlRegistry) -> None:
    registry.create_version("digits", "model", spec("rc1"))
    registry.stage_version("digits", "model", "rc1", "staging", reason="ci", message="tests ok")
    registry.stage_version("digits", "model", "rc1", Stages.PRODUCTION, reason="launch")
    final = registry.stage_version("digits", "model", "rc1", "staging", message="rollback")
    assert final.stage == "staging"
    history = final.stage_conditions
    assert [(c.type, c.reason, c.message) for c in history] == [
        ("testing", None, None),
        ("staging", "ci", "tests ok"),
        ("production", "launch", None),
        ("staging", None, "rollback"),
    ]
    times = [c.last_transition_time for c in history]
    assert times == sorted(times)
    assert all(c.status == "True" for c in history)
    assert final.updated_at == history[-1].last_update_time
    assert registry.get_version("digits", "model", "rc1") == final


def test_unknown_stage_lists_the_valid_ones(registry: SqlRegistry) -> None:
    registry.create_version("digits", "model", spec("rc1"))
    with pytest.raises(InvalidStage) as info:
        registry.stage_version("digits", "model", "rc1", "live")
    message = str(info.value)
    assert "'live'" in message
    for stage in ("testing", "staging", "production", "disabled"):
        assert stage in message
    assert info.value.valid == ("testing", "staging", "production", "disabled")
    with pytest.raises(InvalidStage):
        registry.create_version("digits", "model", spec("rc2", stage="live"))
    assert names(registry.list_versions("digits", "model")) == ["rc1"]
    assert registry.get_version("digits", "model", "rc1").stage == "testing"


def test_patch_version(registry: SqlRegistry) -> None:
    registry.create_version(
        "digits", "artifact", spec("rc1", description="d", tags=["a"], content={"k": 1})
    )
    patched = registry.patch_version(
        "digits", "artifact", "rc1", {"description": "better", "tags": ["b", "c"]}
    )
    assert (patched.description, patched.tags, patched.content) == ("better", ["b", "c"], {"k": 1})
    renamed = registry.patch_version("digits", "artifact", "rc1", {"name": "final", "content": {}})
    assert renamed.name == "final"
    assert renamed.content == {}
    assert renamed.stage_conditions == patched.stage_conditions
    with pytest.raises(VersionNotFound):
        registry.get_version("digits", "artifact", "rc1")
    assert registry.get_version("digits", "artifact", "final") == renamed


def test_patch_version_refuses_bad_changes(registry: SqlRegistry) -> None:
    registry.create_version("digits", "artifact", spec("rc1"))
    registry.create_version("digits", "artifact", spec("rc2"))
    with pytest.raises(InvalidQuery, match="cannot patch manifest, stage; patchable fields: "):
        registry.patch_version("digits", "artifact", "rc1", {"stage": "x", "manifest": {}})
    with pytest.raises(VersionExists, match="'rc2' already exists"):
        registry.patch_version("digits", "artifact", "rc1", {"name": "rc2"})
    with pytest.raises(InvalidName):
        registry.patch_version("digits", "artifact", "rc1", {"name": "bad name"})
    with pytest.raises(VersionNotFound, match="'rc9'"):
        registry.patch_version("digits", "artifact", "rc9", {"description": "x"})
    assert sorted(names(registry.list_versions("digits", "artifact"))) == ["rc1", "rc2"]


def test_delete_version(registry: SqlRegistry) -> None:
    registry.create_version("digits", "artifact", spec("rc1"))
    registry.stage_version("digits", "artifact", "rc1", "production")
    registry.delete_version("digits", "artifact", "rc1")
    with pytest.raises(VersionNotFound):
        registry.get_version("digits", "artifact", "rc1")
    with pytest.raises(VersionNotFound):
        registry.delete_version("digits", "artifact", "rc1")
    assert registry.stage_holder("digits", "artifact", "production") is None
    with registry.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM stage_conditions").scalar() == 0
    # The name is free again.
    assert registry.create_version("digits", "artifact", spec("rc1")).stage == "testing"


def test_missing_version_is_not_found(registry: SqlRegistry) -> None:
    registry.create_project("digits")
    calls = [
        lambda: registry.get_version("digits", "model", "v1"),
        lambda: registry.stage_version("digits", "model", "v1", "staging"),
        lambda: registry.delete_version("digits", "model", "v1"),
        lambda: registry.transfer_version("digits", "model", "v1", "other"),
    ]
    for call in calls:
        with pytest.raises(VersionNotFound, match="model version 'v1' does not exist in 'digits'"):
            call()


def test_transfer_version(registry: SqlRegistry) -> None:
    registry.create_version("digits", "model", spec("rc1", description="moving"))
    registry.stage_version("digits", "model", "rc1", "staging")
    moved = registry.transfer_version("digits", "model", "rc1", "org/new")
    assert (moved.project, moved.name, moved.description) == ("org/new", "rc1", "moving")
    assert [c.type for c in moved.stage_conditions] == ["testing", "staging"]
    assert registry.get_project("org/new").key == "org/new"
    assert registry.list_versions("digits", "model") == []
    assert registry.get_version("org/new", "model", "rc1") == moved


def test_transfer_onto_a_taken_name_is_refused(registry: SqlRegistry) -> None:
    registry.create_version("digits", "model", spec("rc1", description="mine"))
    registry.create_version("other", "model", spec("rc1", description="theirs"))
    with pytest.raises(VersionExists, match="'rc1' already exists in 'other'"):
        registry.transfer_version("digits", "model", "rc1", "other")
    assert registry.get_version("digits", "model", "rc1").description == "mine"
    assert registry.get_version("other", "model", "rc1").description == "theirs"
    with pytest.raises(InvalidName):
        registry.transfer_version("digits", "model", "rc1", "bad key!")


def test_stage_holder_is_the_most_recent_entrant(registry: SqlRegistry) -> None:
    for _ in range(3):
        registry.create_version("digits", "model", spec())
    assert registry.stage_holder("digits", "model", "production") is None
    registry.stage_version("digits", "model", "v2", "production")
    registry.stage_version("digits", "model", "v1", "production")
    holder = registry.stage_holder("digits", "model", "production")
    assert holder is not None
    assert holder.name == "v1"
    # v2 re-enters: it is the most recent again.
    registry.stage_version("digits", "model", "v2", "staging")
    registry.stage_version("digits", "model", "v2", "production")
    assert getattr(registry.stage_holder("digits", "model", "production"), "name", None) == "v2"
    # A version that left the stage no longer holds it.
    registry.stage_version("digits", "model", "v2", "disabled")
    assert getattr(registry.stage_holder("digits", "model", "production"), "name", None) == "v1"
    assert registry.stage_holder("digits", "artifact", "production") is None
    with pytest.raises(InvalidStage):
        registry.stage_holder("digits", "model", "prod")


def test_referenced_digests(registry: SqlRegistry) -> None:
    assert registry.referenced_digests() == set()
    run = registry.create_run("digits").uuid
    registry.write_batch(
        RunBatch(run, refs=[make_ref(run, "model", manifest={"m": {"digest": D1, "size": 1}})])
    )
    registry.create_version(
        "digits",
        "artifact",
        spec("a", manifest={"x": {"digest": D2, "size": 1}, "y": {"digest": D1, "size": 1}}),
    )
    registry.create_version("digits", "model", spec("b", manifest={"z": {"digest": D3, "size": 1}}))
    assert registry.referenced_digests() == {D1, D2, D3}
    registry.delete_version("digits", "model", "b")
    assert registry.referenced_digests() == {D1, D2}


# --- settings and reopening -----------------------------------------------------------


def test_settings_remember_the_first_value(registry: SqlRegistry) -> None:
    assert registry.get_setting("artifacts_uri") is None
    assert registry.remember_setting("artifacts_uri", "s3://first") == "s3://first"
    assert registry.remember_setting("artifacts_uri", "s3://second") == "s3://first"
    assert registry.get_setting("artifacts_uri") == "s3://first"
    assert registry.get_setting("other") is None


def test_reopening_sees_the_data_and_does_not_migrate_again(database_url: str) -> None:
    first = SqlRegistry(database_url)
    run = first.create_run("digits", name="kept").uuid
    first.create_version("digits", "model", spec())
    first.remember_setting("artifacts_uri", "memory://x")
    first.close()

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        second = SqlRegistry(database_url)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    try:
        assert statements, "the listener saw no statement at all"
        ddl = [s for s in statements if re.match(r"\s*(CREATE|ALTER|DROP)\b", s, re.IGNORECASE)]
        assert ddl == []
        assert not any("alembic_version" in s and "UPDATE" in s.upper() for s in statements)
        assert second.get_run(run).name == "kept"
        assert names(second.list_versions("digits", "model")) == ["v1"]
        assert second.get_setting("artifacts_uri") == "memory://x"
        assert second.create_version("digits", "model", spec()).name == "v2"
    finally:
        second.close()
