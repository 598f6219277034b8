"""Outbox: durable acceptance and at-least-once delivery with back-off, limits and retry."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from outbox_support import DEAD, DELIVERED, DELIVERING, NO_MESSAGES, PENDING, Target, files
from structlog.testing import capture_logs
from support import unwritable

from daemon.exceptions import OutboxUnavailable
from daemon.outbox import Outbox, Spool, SqliteStore


async def start(
    nursery: trio.Nursery, store: SqliteStore, spool: Spool, target: Target, **options: Any
) -> Outbox:
    outbox: Outbox = await nursery.start(Outbox(store, spool, deliver=target, **options).run)
    return outbox


class TestAccept:
    async def test_delivers_payload_and_body_then_drops_the_body(
        self, store: SqliteStore, spool: Spool
    ) -> None:
        """The target gets payload, cid and body; afterwards only the delivered row remains."""
        target = Target()
        async with trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, target)
            with capture_logs() as logs:
                message_id = await outbox.accept(
                    "svc.a", {"file_name": "a.txt"}, body=b"contents", cid="cid-1"
                )
                await outbox.wait_idle()
            nursery.cancel_scope.cancel()
        [(message, body, _)] = target.calls
        assert (message.id, message.target, message.cid) == (message_id, "svc.a", "cid-1")
        assert (message.payload, body, message.body_size) == (
            {"file_name": "a.txt"},
            b"contents",
            8,
        )
        assert await store.counts() == {**NO_MESSAGES, DELIVERED: 1}
        assert files(spool.bodies) == []
        assert outbox.stats.accepted == outbox.stats.delivered == 1
        events = [(e["event"], e["message_id"], e["cid"]) for e in logs if "message_id" in e]
        assert events == [
            ("outbox_accepted", message_id, "cid-1"),
            ("outbox_delivered", message_id, "cid-1"),
        ]

    async def test_streamed_body_is_delivered(self, store: SqliteStore, spool: Spool) -> None:
        """A body already written into incoming/ (a durable upload) is accepted without a copy."""
        target = Target()
        async with trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, target)
            incoming = spool.incoming / "body-streamed"
            incoming.write_bytes(b"part one, part two")
            await outbox.accept("svc.a", {}, body_file=incoming, cid="cid-1")
            await outbox.wait_idle()
            nursery.cancel_scope.cancel()
        assert [body for _, body, _ in target.calls] == [b"part one, part two"]
        assert files(spool.incoming) == files(spool.bodies) == []

    async def test_unwritable_spool_refuses_then_recovers(
        self, store: SqliteStore, spool: Spool
    ) -> None:
        """Nothing is recorded while the spool refuses writes; acceptance works once fixed."""
        target = Target()
        async with trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, target)
            with unwritable(spool.incoming), pytest.raises(OutboxUnavailable) as caught:
                await outbox.accept("svc.a", {}, body=b"data", cid="cid-1")
            assert caught.value.reason == "spool directory not writable"
            assert await outbox.counts() == NO_MESSAGES
            assert files(spool.incoming) == files(spool.bodies) == []
            await outbox.accept("svc.a", {}, body=b"data", cid="cid-2")
            await outbox.wait_idle()
            nursery.cancel_scope.cancel()
        assert [(m.cid, body) for m, body, _ in target.calls] == [("cid-2", b"data")]

    async def test_failed_commit_leaves_no_body(self, store: SqliteStore, spool: Spool) -> None:
        """When the row cannot be written, the already spooled body is removed."""
        async with trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, Target())
            nursery.cancel_scope.cancel()
        await store.aclose()
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            await outbox.accept("svc.a", {}, body=b"data", cid="cid-1")
        assert files(spool.bodies) == []

    async def test_bad_arguments_are_refused_before_anything_is_written(
        self, store: SqliteStore, spool: Spool
    ) -> None:
        """Two bodies, a payload JSON cannot hold, or a body file outside incoming/."""
        async with trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, Target())
            with pytest.raises(ValueError, match="not both"):
                await outbox.accept("svc.a", {}, body=b"x", body_file=spool.incoming, cid="c")
            with pytest.raises(TypeError, match="JSON"):
                await outbox.accept("svc.a", {"when": object()}, cid="c")
            with pytest.raises(ValueError, match="incoming"):
                await outbox.accept("svc.a", {}, body_file=spool.directory / "x", cid="c")
            nursery.cancel_scope.cancel()
        assert await store.counts() == NO_MESSAGES


class TestDelivery:
    async def test_transient_failures_back_off_exponentially(
        self, store: SqliteStore, spool: Spool, autojump_clock: trio.abc.Clock
    ) -> None:
        """Each wait is at least its logged delay, within its cap; then it is delivered."""
        target = Target(failures=4)
        async with trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, target, backoff_base=10.0, backoff_max=25.0)
            with capture_logs() as logs:
                message_id = await outbox.accept("svc.a", {}, cid="cid-1")
                await target.wait_calls(5)
                await outbox.wait_idle()
            nursery.cancel_scope.cancel()
        delays = [e["next_in"] for e in logs if e["event"] == "outbox_attempt_failed"]
        assert [e["attempt"] for e in logs if e["event"] == "outbox_attempt_failed"] == [1, 2, 3, 4]
        caps = [10.0, 20.0, 25.0, 25.0]
        assert all(0.0 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
        times = [when for _, _, when in target.calls]
        waited = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(wait >= delay - 0.001 for wait, delay in zip(waited, delays, strict=True))
        assert sum(delays) > 0.0
        assert target.delivered == {message_id: 1}
        assert outbox.stats.failed_attempts == 4
        delivered = await store.get(message_id)
        assert delivered is not None
        assert (delivered.state, delivered.attempts) == (DELIVERED, 5)
        assert delivered.last_error == "ConnectionRefusedError: attempt 4 refused"

    async def test_concurrency_is_capped_per_target_and_overall(
        self, store: SqliteStore, spool: Spool
    ) -> None:
        """No target sees more than its limit at once, and the overall cap holds too."""
        target = Target(gate=trio.Event())
        async with trio.open_nursery() as nursery:
            outbox = await start(
                nursery, store, spool, target, per_target_concurrency=2, max_concurrency=5
            )
            for number in range(30):
                await outbox.accept(f"svc.{number % 3}", {"n": number}, cid=f"cid-{number}")
            await target.wait_calls(5)
            with trio.move_on_after(0.2):  # a sixth delivery would break a limit: give it a chance
                await target.wait_calls(6)
            assert (len(target.calls), target.active.total()) == (5, 5)
            assert sorted(target.active.values()) == [1, 2, 2]
            assert target.gate is not None
            target.gate.set()
            await target.wait_calls(30)
            await outbox.wait_idle()
            nursery.cancel_scope.cancel()
        assert max(target.most_active.values()) == 2
        assert target.most_active_overall == 5
        assert len(target.delivered) == 30

    async def test_dead_after_max_attempts_then_retry_delivers(
        self, store: SqliteStore, spool: Spool, autojump_clock: trio.abc.Clock
    ) -> None:
        """A message that keeps failing dies with its last error; retry() revives it."""
        target = Target(broken=True)
        async with trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, target, max_attempts=3)
            with capture_logs() as logs:
                message_id = await outbox.accept("svc.a", {}, body=b"kept", cid="cid-1")
                await target.wait_calls(3)
                await outbox.wait_idle()
            dead = await outbox.get(message_id)
            assert dead is not None
            assert (dead.state, dead.attempts) == (DEAD, 3)
            assert dead.last_error == "ConnectionRefusedError: attempt 3 refused"
            assert [m.id for m in await outbox.list(DEAD)] == [message_id]
            assert outbox.stats.dead == 1
            [died] = [e for e in logs if e["event"] == "outbox_dead"]
            assert (died["message_id"], died["cid"], died["target"]) == (
                message_id,
                "cid-1",
                "svc.a",
            )
            assert died["error"] == dead.last_error

            target.broken = False
            assert await outbox.retry(message_id)
            await target.wait_calls(4)
            await outbox.wait_idle()
            nursery.cancel_scope.cancel()
        assert target.calls[-1][1] == b"kept"
        delivered = await store.get(message_id)
        assert delivered is not None
        assert (delivered.state, delivered.attempts) == (DELIVERED, 1)
        assert not await outbox.retry(message_id)

    async def test_admin_view_of_waiting_messages(
        self, store: SqliteStore, spool: Spool, autojump_clock: trio.abc.Clock
    ) -> None:
        """Counts and the oldest age show a stuck delivery; delete() forgets a waiting one."""
        target = Target(gate=trio.Event())
        async with trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, target, per_target_concurrency=1)
            assert await outbox.oldest_pending_age() is None
            await outbox.accept("svc.a", {}, cid="cid-1")
            waiting = await outbox.accept("svc.a", {}, body=b"x", cid="cid-2")
            await target.wait_calls(1)
            await trio.sleep(30)
            age = await outbox.oldest_pending_age()
            assert age is not None and age >= 30
            assert await outbox.counts() == {**NO_MESSAGES, PENDING: 1, DELIVERING: 1}
            assert await outbox.delete(waiting)
            assert not await outbox.delete(target.calls[0][0].id)
            nursery.cancel_scope.cancel()
        assert await store.counts() == {**NO_MESSAGES, DELIVERING: 1}
        assert files(spool.bodies) == []


class TestRestart:
    async def test_interrupted_and_waiting_messages_are_delivered_after_restart(
        self, tmp_path: Path, spool: Spool
    ) -> None:
        """A new store and outbox on the same files deliver what the first left, orphans go."""
        path = tmp_path / "outbox.sqlite"
        stuck = Target(gate=trio.Event())
        async with await SqliteStore.open(path) as store, trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, stuck, per_target_concurrency=1)
            first = await outbox.accept("svc.a", {"n": 1}, body=b"one", cid="cid-1")
            second = await outbox.accept("svc.a", {"n": 2}, body=b"two", cid="cid-2")
            await stuck.wait_calls(1)
            nursery.cancel_scope.cancel()
        (spool.bodies / "no-such-message").write_bytes(b"orphan")
        (spool.incoming / "interrupted.part").write_bytes(b"half")

        target = Target()
        async with await SqliteStore.open(path) as store, trio.open_nursery() as nursery:
            # Ages 0: every orphan counts as old (the age rules are in test_processes.py).
            outbox = await start(
                nursery,
                store,
                await Spool.open(spool.directory),
                target,
                incoming_max_age=0.0,
                body_max_age=0.0,
            )
            await outbox.wait_idle()
            nursery.cancel_scope.cancel()
            assert await store.counts() == {**NO_MESSAGES, DELIVERED: 2}
        received = {m.id: (m.payload, body, m.attempts) for m, body, _ in target.calls}
        assert received == {first: ({"n": 1}, b"one", 2), second: ({"n": 2}, b"two", 1)}
        assert files(spool.bodies) == files(spool.incoming) == []

    async def test_a_thousand_messages_are_each_delivered_once(
        self, store: SqliteStore, spool: Spool
    ) -> None:
        """The happy path under load: every accepted id arrives exactly once."""
        target = Target()
        async with trio.open_nursery() as nursery:
            outbox = await start(nursery, store, spool, target)
            accepted = [
                await outbox.accept(f"svc.{number % 4}", {"n": number}, cid=f"cid-{number}")
                for number in range(1000)
            ]
            await target.wait_calls(1000)
            await outbox.wait_idle()
            nursery.cancel_scope.cancel()
        assert target.delivered == dict.fromkeys(accepted, 1)
        assert len(target.calls) == 1000
        assert await store.counts() == {**NO_MESSAGES, DELIVERED: 1000}
