"""The table behind Idempotency-Key: one claim, one answer, replays, stale claims taken over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ensign.errors import Conflict
from ensign.registry.sql import SqlRegistry
from ensign.registry.sql.schema import idempotency_keys
from ensign.server import idempotency
from ensign.server.idempotency import IdempotencyStore, StoredAnswer


@pytest.fixture
def store(database_url: str) -> Iterator[IdempotencyStore]:
    registry = SqlRegistry(database_url)  # migrates the schema
    try:
        yield IdempotencyStore(registry.engine)
    finally:
        registry.close()


def test_the_first_answer_is_replayed(store: IdempotencyStore) -> None:
    claim = store.claim("slot", "fp")
    assert isinstance(claim, str)
    store.save("slot", claim, "fp", 201, b'{"name":"v1"}')
    assert store.claim("slot", "fp") == StoredAnswer("fp", 201, '{"name":"v1"}')


def test_a_released_claim_can_be_claimed_again(store: IdempotencyStore) -> None:
    first = store.claim("slot", "fp")
    assert isinstance(first, str)
    store.release("slot", first)
    assert isinstance(store.claim("slot", "fp"), str)


def test_a_running_claim_makes_a_retry_wait_then_conflict(
    store: IdempotencyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "_WAIT_SECONDS", 0.2)
    assert isinstance(store.claim("slot", "fp"), str)
    with pytest.raises(Conflict, match="still being processed"):
        store.claim("slot", "fp")


def test_a_stale_claim_is_taken_over_and_its_late_answer_is_dropped(
    store: IdempotencyStore,
) -> None:
    dead = store.claim("slot", "fp")
    assert isinstance(dead, str)
    with store.engine.begin() as conn:  # its server died two hours ago
        conn.execute(idempotency_keys.update().values(created_at=sa.literal(0.0)))
    alive = store.claim("slot", "fp")
    assert isinstance(alive, str)
    assert alive != dead
    store.save("slot", dead, "fp", 201, b'{"from":"the dead one"}')  # too late: not its claim
    store.release("slot", dead)  # nor can it release the new claim
    store.save("slot", alive, "fp", 201, b'{"from":"the live one"}')
    assert store.claim("slot", "fp") == StoredAnswer("fp", 201, '{"from":"the live one"}')
