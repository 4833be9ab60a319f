"""The write transactions of SQLite stores: one writer thread at a time, no silent hang."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from ensign.registry.sql.engine import create_engine, write_transaction


def test_a_nested_write_transaction_fails_instead_of_hanging(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        outer = write_transaction(engine)
        inner = write_transaction(engine)
        with outer, pytest.raises(RuntimeError, match="inside another"), inner:
            pass
        with write_transaction(engine) as conn:  # the lock was given back
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_writer_threads_take_turns(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with write_transaction(engine) as conn:
            conn.execute(sa.text("CREATE TABLE counter (n INTEGER)"))
            conn.execute(sa.text("INSERT INTO counter VALUES (0)"))

        def bump() -> None:
            for _ in range(50):
                with write_transaction(engine) as conn:
                    n = conn.execute(sa.text("SELECT n FROM counter")).scalar_one()
                    conn.execute(sa.text("UPDATE counter SET n = :n"), {"n": n + 1})

        threads = [threading.Thread(target=bump) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT n FROM counter")).scalar_one() == 400
    finally:
        engine.dispose()
