"""SqliteStore: records, state transitions, claiming, durability across instances."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from outbox_support import DEAD, DELIVERED, DELIVERING, NO_MESSAGES, PENDING

from daemon.exceptions import OutboxUnavailable
from daemon.outbox import Message, MessageState, SqliteStore, new_message_id


def message(target: str = "svc.a", *, due: float = 100.0, **fields: Any) -> Message:
    return Message(
        id=new_message_id(due),
        target=target,
        payload={"file_name": "a.txt", "n": [1, 2]},
        cid="cid-1",
        created_at=due,
        next_attempt_at=due,
        updated_at=due,
        **fields,
    )


async def add_all(store: SqliteStore, *messages: Message) -> None:
    for each in messages:
        await store.add(each)


class TestRecords:
    async def test_get_returns_what_was_added(self, store: SqliteStore) -> None:
        """A message reads back field for field, payload included."""
        original = message(body_size=12)
        await store.add(original)
        assert await store.get(original.id) == original
        assert await store.get("no-such-id") is None

    async def test_list_in_acceptance_order_with_state_and_paging(self, store: SqliteStore) -> None:
        """list() filters by state and pages in the order messages were added."""
        first, second, third = message(), message(), message(state=DEAD)
        await add_all(store, first, second, third)
        assert [m.id for m in await store.list()] == [first.id, second.id, third.id]
        assert [m.id for m in await store.list(PENDING)] == [first.id, second.id]
        assert [m.id for m in await store.list(limit=1, offset=1)] == [second.id]
        assert await store.list(DELIVERED) == []

    async def test_counts_name_every_state(self, store: SqliteStore) -> None:
        """counts() reports zero for states with no message."""
        await add_all(store, message(), message(), message(state=DEAD))
        assert await store.counts() == {PENDING: 2, DELIVERING: 0, DELIVERED: 0, DEAD: 1}

    async def test_oldest_pending_ignores_finished_messages(self, store: SqliteStore) -> None:
        """The oldest undelivered message is pending or delivering, not dead or delivered."""
        assert await store.oldest_pending_created_at() is None
        await add_all(store, message(due=50.0, state=DEAD), message(due=70.0), message(due=60.0))
        assert await store.oldest_pending_created_at() == 60.0

    async def test_delete_refuses_a_message_in_delivery(self, store: SqliteStore) -> None:
        """A delivering message stays; others are forgotten."""
        waiting, busy = message(), message(state=DELIVERING)
        await add_all(store, waiting, busy)
        assert await store.delete(waiting.id)
        assert not await store.delete(busy.id)
        assert not await store.delete("no-such-id")
        assert [m.id for m in await store.list()] == [busy.id]


class TestTransitions:
    async def test_claim_takes_due_messages_oldest_first(self, store: SqliteStore) -> None:
        """Only messages due by ``now`` are claimed; claiming counts an attempt."""
        late, early, future = message(due=20.0), message(due=10.0), message(due=99.0)
        await add_all(store, late, early, future)
        claimed = await store.claim_due(50.0, 10)
        assert [m.id for m in claimed] == [early.id, late.id]
        assert all(m.state is DELIVERING and m.attempts == 1 for m in claimed)
        assert claimed[0] == await store.get(early.id)
        assert await store.claim_due(50.0, 10) == []

    async def test_claim_respects_limit(self, store: SqliteStore) -> None:
        """No more than ``limit`` messages are claimed at once."""
        await add_all(store, *(message() for _ in range(5)))
        assert len(await store.claim_due(100.0, 3)) == 3
        assert len(await store.claim_due(100.0, 3)) == 2

    async def test_claim_caps_each_target_past_a_backlog(self, store: SqliteStore) -> None:
        """A full target's backlog does not hide other targets; earlier claims count."""
        await store.add(message("svc.a", state=DELIVERING))
        await add_all(store, *(message("svc.a", due=1.0) for _ in range(10)))
        await add_all(store, *(message("svc.b", due=2.0) for _ in range(3)))
        claimed = await store.claim_due(100.0, 10, per_target=2)
        assert sorted(m.target for m in claimed) == ["svc.a", "svc.b", "svc.b"]
        assert await store.claim_due(100.0, 10, per_target=2) == []

    async def test_delivered_only_from_delivering(self, store: SqliteStore) -> None:
        """mark_delivered finishes a claimed message and nothing else."""
        claimed, waiting = message(), message(due=200.0)
        await add_all(store, claimed, waiting)
        await store.claim_due(100.0, 1)
        assert await store.mark_delivered(claimed.id, 101.0)
        assert not await store.mark_delivered(waiting.id, 101.0)
        delivered = await store.get(claimed.id)
        assert delivered is not None
        assert (delivered.state, delivered.updated_at) == (DELIVERED, 101.0)

    async def test_failed_goes_back_to_pending_or_dead(self, store: SqliteStore) -> None:
        """A failure with a next time waits for it; one without is dead."""
        retried, given_up = message(), message()
        await add_all(store, retried, given_up)
        await store.claim_due(100.0, 2)
        assert await store.mark_failed(retried.id, "ConnectionError: refused", 101.0, 130.0)
        assert await store.mark_failed(given_up.id, "ConnectionError: refused", 101.0, None)
        assert not await store.mark_failed(given_up.id, "again", 102.0, None)
        waiting = await store.get(retried.id)
        dead = await store.get(given_up.id)
        assert waiting is not None and dead is not None
        assert (waiting.state, waiting.next_attempt_at, waiting.attempts) == (PENDING, 130.0, 1)
        assert (dead.state, dead.last_error) == (DEAD, "ConnectionError: refused")
        assert await store.next_due_after(101.0) == 130.0
        assert await store.next_due_after(130.0) is None

    async def test_retry_revives_dead_with_fresh_attempts(self, store: SqliteStore) -> None:
        """retry() makes a dead message due now with attempts reset; delivering ones are refused."""
        dead = message(state=DEAD, attempts=10, due=5.0)
        busy = message(state=DELIVERING)
        await add_all(store, dead, busy)
        assert await store.retry(dead.id, 300.0)
        assert not await store.retry(busy.id, 300.0)
        revived = await store.get(dead.id)
        assert revived is not None
        assert (revived.state, revived.attempts, revived.next_attempt_at) == (PENDING, 0, 300.0)

    async def test_prune_forgets_old_deliveries_only(self, store: SqliteStore) -> None:
        """Delivered messages older than the cut-off go; everything else stays."""
        old = message(state=DELIVERED, due=10.0)
        recent = message(state=DELIVERED, due=90.0)
        dead = message(state=DEAD, due=10.0)
        await add_all(store, old, recent, dead)
        assert await store.prune(50.0) == 1
        assert [m.id for m in await store.list()] == [recent.id, dead.id]

    async def test_body_ids_name_bodies_still_needed(self, store: SqliteStore) -> None:
        """Bodies of delivered messages and messages without a body are not kept."""
        keep = message(body_size=3)
        dead = message(body_size=3, state=DEAD)
        await add_all(store, keep, dead, message(body_size=3, state=DELIVERED), message())
        assert await store.body_ids() == {keep.id, dead.id}


class TestDurability:
    async def test_a_fresh_instance_sees_every_state(self, tmp_path: Path) -> None:
        """What one store committed, a new store on the same file reads back."""
        path = tmp_path / "outbox.sqlite"
        messages = [message(state=state) for state in MessageState]
        async with await SqliteStore.open(path) as first:
            await add_all(first, *messages)
        async with await SqliteStore.open(path) as second:
            assert await second.list() == messages

    async def test_recover_puts_deliveries_back_to_pending(self, tmp_path: Path) -> None:
        """Claims interrupted by a stop are pending again, attempts kept, after recover()."""
        path = tmp_path / "outbox.sqlite"
        async with await SqliteStore.open(path) as first:
            await add_all(first, message(), message())
            claimed = await first.claim_due(100.0, 2)
        async with await SqliteStore.open(path) as second:
            assert await second.recover() == 2
            again = await second.claim_due(100.0, 2)
        assert [m.id for m in again] == [m.id for m in claimed]
        assert [m.attempts for m in again] == [2, 2]

    async def test_two_stores_share_one_file(self, store: SqliteStore) -> None:
        """A second store (another process's) on an open file reads and writes it too."""
        first = message()
        await store.add(first)
        async with await SqliteStore.open(store.path) as other:
            assert await other.get(first.id) == first
            second = message()
            await other.add(second)
        assert [m.id for m in await store.list()] == [first.id, second.id]

    async def test_a_write_waits_for_another_writer(self, store: SqliteStore) -> None:
        """A write blocked by another connection's transaction goes through once it ends."""
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")

        async def commit_later() -> None:
            await trio.sleep(0.3)  # the other process's transaction, taking its time
            blocker.execute("COMMIT")

        added = message()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(commit_later)
            started = trio.current_time()
            await store.add(added)
            waited = trio.current_time() - started
        blocker.close()
        assert waited >= 0.25
        assert await store.get(added.id) == added

    async def test_concurrent_claims_never_share_a_message(self, store: SqliteStore) -> None:
        """Two stores on one file claiming at once (in two threads) split the messages."""
        await add_all(store, *[message(f"svc.{n % 5}") for n in range(300)])
        claims: list[list[str]] = [[], []]
        async with await SqliteStore.open(store.path) as other:

            async def claim_all(claimer: SqliteStore, claimed: list[str]) -> None:
                while batch := await claimer.claim_due(100.0, 7):
                    claimed += [m.id for m in batch]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(claim_all, store, claims[0])
                nursery.start_soon(claim_all, other, claims[1])
        # How the two interleave is up to SQLite's lock (one may even get them all).
        assert sorted(claims[0] + claims[1]) == sorted(m.id for m in await store.list(limit=300))
        assert await store.counts() == {**NO_MESSAGES, DELIVERING: 300}

    async def test_a_lock_held_past_the_timeout_is_busy(self, tmp_path: Path) -> None:
        """A database locked longer than ``busy_timeout`` refuses the write, and keeps nothing."""
        path = tmp_path / "outbox.sqlite"
        async with await SqliteStore.open(path, busy_timeout=0.1) as store:
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(OutboxUnavailable) as caught:
                    await store.add(message())
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert caught.value.reason == "database busy"
            assert await store.list() == []

    async def test_unopenable_file_is_unavailable(self, tmp_path: Path) -> None:
        """A database path inside a regular file cannot be created."""
        (tmp_path / "file").write_text("not a directory")
        with pytest.raises(OutboxUnavailable) as caught:
            await SqliteStore.open(tmp_path / "file" / "outbox.sqlite")
        assert caught.value.reason == "database not writable"
        assert str(tmp_path / "file") in str(caught.value)

    async def test_duplicate_id_is_rejected(self, store: SqliteStore) -> None:
        """Ids are unique: adding the same message twice fails and keeps the first."""
        original = message()
        await store.add(original)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await store.add(dataclasses.replace(original, target="svc.other"))
        assert await store.get(original.id) == original
