"""The Alembic chain builds exactly the schema the code declares, once, on both databases."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ensign.registry.sql import SqlRegistry
from ensign.registry.sql.engine import (
    HEAD_REVISION,
    _alembic_config,
    create_engine,
    current_revision,
    head_of_scripts,
    upgrade,
    write_transaction,
)
from ensign.registry.sql.schema import metadata

TABLES = {t.name for t in metadata.sorted_tables}


def schema_diffs(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs: list[Any] = compare_metadata(context, metadata)
    return diffs


def user_tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_head_revision_is_the_head_of_the_scripts() -> None:
    assert head_of_scripts() == HEAD_REVISION


def test_head_matches_the_declared_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == HEAD_REVISION
        assert user_tables(engine) == TABLES
        assert schema_diffs(engine) == []
    finally:
        engine.dispose()


def test_the_comparison_does_see_a_drift(database_url: str) -> None:
    """Guard for the test above: a schema that differs is reported."""
    engine = create_engine(database_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE INDEX ix_extra ON runs (name)")
        kinds = [diff[0] for diff in schema_diffs(engine)]
        assert kinds == ["remove_index"]
    finally:
        engine.dispose()


def test_downgrade_to_base_then_upgrade(database_url: str) -> None:
    registry = SqlRegistry(database_url)
    registry.create_run("digits")
    engine = registry.engine
    try:
        with write_transaction(engine) as conn:
            command.downgrade(_alembic_config(conn), "base")
        assert current_revision(engine) is None
        assert user_tables(engine) == set()
        upgrade(engine)
        assert current_revision(engine) == HEAD_REVISION
        assert schema_diffs(engine) == []
        # The registry works on the rebuilt (empty) schema.
        assert registry.list_projects() == []
        assert registry.create_run("digits").status == "running"
    finally:
        registry.close()


def _open_and_write(url: str, index: int) -> str:
    registry = SqlRegistry(url)
    try:
        run = registry.create_run("digits", name=f"opener-{index}")
        return run.uuid
    finally:
        registry.close()


def _count_revisions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
    finally:
        engine.dispose()


def test_threads_opening_a_fresh_database_at_once(database_url: str) -> None:
    count = 8
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    uuids: list[str] = []

    def opener(index: int) -> None:
        try:
            barrier.wait()
            uuids.append(_open_and_write(database_url, index))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(uuids)) == count
    assert _count_revisions(database_url) == [HEAD_REVISION]
    registry = SqlRegistry(database_url)
    try:
        assert len(registry.list_runs("digits", limit=100)) == count
    finally:
        registry.close()


_CHILD = """
import sys, time
from pathlib import Path
from ensign.registry.sql import SqlRegistry

url, index, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
registry = SqlRegistry(url)
print(registry.create_run("digits", name="opener-" + index).uuid)
registry.close()
"""


@pytest.mark.slow
def test_processes_opening_a_fresh_sqlite_file_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'ensign.db'}"
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, str(i), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    go.touch()
    outcomes = [child.communicate(timeout=120) for child in children]
    for child, (_, err) in zip(children, outcomes, strict=True):
        assert child.returncode == 0, err
    uuids = {out.strip() for out, _ in outcomes}
    assert len(uuids) == len(children)
    assert _count_revisions(url) == [HEAD_REVISION]
    engine = create_engine(url)
    try:
        assert user_tables(engine) == TABLES
        assert schema_diffs(engine) == []
    finally:
        engine.dispose()
