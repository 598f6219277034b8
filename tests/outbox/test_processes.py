"""Several processes on one outbox: all accept, one delivers, orphans are judged by age."""

from __future__ import annotations

import functools
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import trio
from outbox_support import DEAD, DELIVERED, DELIVERING, NO_MESSAGES, PENDING, Target, files

from daemon import Service
from daemon._config import OutboxConfig
from daemon._durable import DurableOutbox, run_outbox
from daemon._router import Router
from daemon.outbox import Outbox, OutboxWriter, Spool, SqliteStore

# Another worker process: accepts ``count`` messages with bodies, and exits 0 only if
# every acceptance succeeded (a "database is locked" would end it with a traceback).
ACCEPTOR = """
import sys
from pathlib import Path

import trio

from daemon.outbox import OutboxWriter, Spool, SqliteStore


async def main(directory: Path, tag: str, count: int) -> None:
    async with await SqliteStore.open(directory / "outbox.sqlite") as store:
        writer = OutboxWriter(store, await Spool.open(directory / "spool"))
        for n in range(count):
            body = f"{tag}-{n}".encode()
            await writer.accept(f"svc.{n % 3}", {"tag": tag, "n": n}, body=body, cid=f"{tag}-{n}")


trio.run(main, Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
"""


async def accept_in_another_process(directory: Path, tag: str, count: int) -> None:
    result = await trio.run_process(
        [sys.executable, "-c", ACCEPTOR, str(directory), tag, str(count)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()


class TestRoles:
    async def test_messages_of_another_process_are_delivered_once(
        self, tmp_path: Path, store: SqliteStore, spool: Spool
    ) -> None:
        """200 accepted by a subprocess and 100 by the deliverer's process: 300 deliveries."""
        target = Target()
        async with trio.open_nursery() as nursery:
            outbox: Outbox = await nursery.start(Outbox(store, spool, deliver=target).run)

            async def accept_here() -> None:
                for n in range(100):
                    await outbox.accept("svc.here", {"n": n}, body=b"here", cid=f"here-{n}")

            with trio.fail_after(60):
                async with trio.open_nursery() as acceptors:
                    acceptors.start_soon(accept_in_another_process, tmp_path, "there", 200)
                    acceptors.start_soon(accept_here)
                await target.wait_delivered(300)
                await outbox.wait_settled()
            nursery.cancel_scope.cancel()
        assert set(target.delivered.values()) == {1}
        there = [m for m in await store.list(limit=1000) if m.cid.startswith("there-")]
        assert len(there) == 200
        assert all(target.bodies[m.id] == m.cid.encode() for m in there)
        assert await store.counts() == {**NO_MESSAGES, DELIVERED: 300}
        assert files(spool.bodies) == files(spool.incoming) == []

    async def test_two_processes_accept_at_once(self, tmp_path: Path, store: SqliteStore) -> None:
        """2 x 200 concurrent acceptances, none refused as locked: 400 pending, 400 bodies."""
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(accept_in_another_process, tmp_path, "a", 200)
                nursery.start_soon(accept_in_another_process, tmp_path, "b", 200)
        messages = await store.list(limit=1000)
        assert Counter(m.cid.split("-")[0] for m in messages) == {"a": 200, "b": 200}
        assert await store.counts() == {**NO_MESSAGES, PENDING: 400}
        assert len(files(tmp_path / "spool" / "bodies")) == 400

    async def test_a_writer_leaves_the_deliverers_work_alone(
        self, tmp_path: Path, store: SqliteStore, spool: Spool
    ) -> None:
        """A writer starting beside a busy deliverer recovers nothing and claims nothing."""
        target = Target(gate=trio.Event())
        async with trio.open_nursery() as nursery:
            outbox: Outbox = await nursery.start(
                Outbox(store, spool, deliver=target, per_target_concurrency=1).run
            )
            in_flight = await outbox.accept("svc.a", {}, body=b"one", cid="cid-1")
            await target.wait_calls(1)
            async with await SqliteStore.open(store.path) as other_store:
                writer = OutboxWriter(other_store, await Spool.open(spool.directory))
                waiting = await writer.accept("svc.a", {}, body=b"two", cid="cid-2")
                assert not hasattr(writer, "run")
                in_flight_now = await writer.get(in_flight)
                waiting_now = await writer.get(waiting)
            assert in_flight_now is not None and waiting_now is not None
            assert (in_flight_now.state, in_flight_now.attempts) == (DELIVERING, 1)
            assert (waiting_now.state, waiting_now.attempts) == (PENDING, 0)
            assert files(spool.bodies) == sorted([in_flight, waiting])
            assert target.gate is not None
            target.gate.set()
            await target.wait_delivered(2)
            await outbox.wait_settled()
            nursery.cancel_scope.cancel()
        assert target.delivered == {in_flight: 1, waiting: 1}

    async def test_a_retry_from_another_process_is_delivered(
        self, store: SqliteStore, spool: Spool
    ) -> None:
        """The admin API of any worker revives a dead message; the deliverer's poll finds it."""
        target = Target(broken=True)
        async with trio.open_nursery() as nursery:
            outbox: Outbox = await nursery.start(
                Outbox(store, spool, deliver=target, max_attempts=1).run
            )
            message_id = await outbox.accept("svc.a", {}, body=b"kept", cid="cid-1")
            await outbox.wait_settled()
            async with await SqliteStore.open(store.path) as other_store:
                writer = OutboxWriter(other_store, spool)
                assert await writer.counts() == {**NO_MESSAGES, DEAD: 1}
                target.broken = False
                assert await writer.retry(message_id)
            with trio.fail_after(5):
                await target.wait_delivered(1)
            nursery.cancel_scope.cancel()
        assert target.bodies == {message_id: b"kept"}


class TestOrphans:
    async def test_start_up_removes_only_old_orphans(
        self, store: SqliteStore, spool: Spool
    ) -> None:
        """Old incoming files and old bodies without a row go; fresh ones and kept bodies stay."""
        writer = OutboxWriter(store, spool)
        kept = await writer.accept("svc.a", {}, body=b"kept", cid="cid-1")
        (spool.incoming / "old.part").write_bytes(b"abandoned")
        (spool.bodies / "old-orphan").write_bytes(b"no row")
        await trio.sleep(0.6)  # file times are the kernel's: let these grow older than 0.5 s
        (spool.incoming / "fresh.part").write_bytes(b"being written")
        (spool.bodies / "fresh-orphan").write_bytes(b"row being committed")
        target = Target(gate=trio.Event())  # the kept message stays in flight
        async with trio.open_nursery() as nursery:
            await nursery.start(
                Outbox(store, spool, deliver=target, incoming_max_age=0.5, body_max_age=0.5).run
            )
            nursery.cancel_scope.cancel()
        assert files(spool.incoming) == ["fresh.part"]
        assert files(spool.bodies) == sorted(["fresh-orphan", kept])

    async def test_default_ages_keep_work_in_progress(
        self, store: SqliteStore, spool: Spool
    ) -> None:
        """With the default ages, a deliverer starting while others accept removes nothing."""
        (spool.incoming / "body-streaming").write_bytes(b"half a body")
        (spool.bodies / "not-yet-committed").write_bytes(b"body")
        async with trio.open_nursery() as nursery:
            await nursery.start(Outbox(store, spool, deliver=Target()).run)
            nursery.cancel_scope.cancel()
        assert files(spool.incoming) == ["body-streaming"]
        assert files(spool.bodies) == ["not-yet-committed"]

    async def test_orphans_are_swept_hourly(
        self, store: SqliteStore, spool: Spool, autojump_clock: trio.abc.Clock
    ) -> None:
        """Orphans left after start-up (a worker died mid-accept) go at the next sweep."""
        async with trio.open_nursery() as nursery:
            await nursery.start(
                Outbox(
                    store,
                    spool,
                    deliver=Target(),
                    poll_interval=None,
                    incoming_max_age=0.0,
                    body_max_age=0.0,
                ).run
            )
            started = trio.current_time()
            (spool.incoming / "died.part").write_bytes(b"half")
            (spool.bodies / "died-before-commit").write_bytes(b"body")
            await trio.sleep(3599)
            assert files(spool.incoming) == ["died.part"]
            # The sweep removes them in a thread, which the clock does not wait for.
            while files(spool.incoming) or files(spool.bodies):  # noqa: ASYNC110
                await trio.sleep(1)
            assert trio.current_time() - started >= 3600
            nursery.cancel_scope.cancel()


class Record(Service):
    name = "test.record"
    received: list[Any] = []

    async def handle(self) -> None:
        Record.received.append(self.request.payload)


class TestRunOutbox:
    async def test_accept_only_worker_and_deliverer(self, tmp_path: Path) -> None:
        """``run_outbox(deliverer=False)`` accepts; the deliverer's run_outbox delivers it."""
        Record.received = []
        config = OutboxConfig()
        directory = tmp_path / "outbox"
        async with trio.open_nursery() as nursery:
            router: Router = await nursery.start(Router().run)
            await router.swap([], [Record])
            worker: DurableOutbox = await nursery.start(
                functools.partial(run_outbox, deliverer=False), config, directory, Router()
            )
            assert not isinstance(worker.outbox, Outbox)
            await worker.accept_invoke("test.record", {"n": 1}, "cid-1")
            await worker.accept_invoke("test.record", b"bytes", "cid-2")
            assert await worker.outbox.counts() == {**NO_MESSAGES, PENDING: 2}
            deliverer: DurableOutbox = await nursery.start(run_outbox, config, directory, router)
            assert isinstance(deliverer.outbox, Outbox)
            with trio.fail_after(5):
                await deliverer.outbox.wait_settled()
            assert await worker.outbox.counts() == {**NO_MESSAGES, DELIVERED: 2}
            nursery.cancel_scope.cancel()
        assert sorted(map(repr, Record.received)) == ["b'bytes'", "{'n': 1}"]
