"""The outbox: durable acceptance in every worker, delivery at least once in one.

A message is acknowledged only when its body (if any) and its row are on disk
(see ``_spool`` and ``_sqlite``). Two roles share that acceptance code:

- :class:`OutboxWriter` accepts messages and serves the admin API (get, list,
  counts, retry, delete). Every worker process has one. It never claims,
  recovers or removes files, so it is safe beside another process's deliverer.
- :class:`Outbox` is a writer that also delivers; there is exactly one per
  machine (the supervisor's worker 0). It recovers at start-up, claims due
  messages, hands each to ``deliver`` and records the outcome: delivered,
  failed with an exponential back-off with full jitter, or dead after
  ``max_attempts``. A delivery in flight when the process stopped is made
  again after the restart, so ``deliver`` must tolerate duplicates.

The deliverer sleeps until the next message is due, until an acceptance or a
retry in its own process wakes it, or for at most ``poll_interval``: that poll
is how it notices what other processes accepted or retried, without any IPC.
Such a message waits up to ``poll_interval`` (default 0.2 s, so 0.1 s on
average) before its delivery starts; one accepted in the deliverer's own
process starts at once. An idle poll costs two reads and never takes the
database's write lock.

Orphans: a spooled body without a row is left by a process that stopped
between writing the body and committing its row (or failed to remove it). The
deliverer removes orphans at start-up and then hourly, while other processes
may be accepting, so it goes by age, a file's ctime (its last write or rename):

- ``incoming/`` holds bodies still being written (a request body streaming
  in, possibly slowly): a file there is removed once untouched for
  ``incoming_max_age`` (1 h);
- ``bodies/`` holds committed bodies; a body's row is committed right after
  its rename, so a body without a row is removed once renamed more than
  ``body_max_age`` (60 s) ago: far longer than a commit can wait for the
  database (its busy timeout, 5 s). The directory is listed before the rows
  are read, so a row committed in between keeps its body.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
import trio

from daemon.exceptions import OutboxUnavailable
from daemon.outbox._spool import Spool
from daemon.outbox._store import Message, MessageState, Store, new_message_id

log = structlog.get_logger(__name__)

Deliver = Callable[[Message, Path | None], Awaitable[None]]
"""Delivers one message (and its spooled body file, if any); raises to fail the attempt."""

_MAX_ERROR_LENGTH = 2000
_SWEEP_INTERVAL = 3600.0  # seconds between the deliverer's orphan sweeps after start-up


@dataclasses.dataclass
class OutboxStats:
    """Counters since this Outbox was created, for metrics; add them up across processes."""

    accepted: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dead: int = 0


class WallClock:
    """Seconds since the epoch that advance with Trio's clock.

    Anchored to ``time.time()`` at the first call, so stored times are real
    dates while sleeping and back-off follow Trio's (possibly mock) clock.
    """

    def __init__(self) -> None:
        self._offset: float | None = None

    def __call__(self) -> float:
        now = trio.current_time()
        if self._offset is None:
            self._offset = time.time() - now
        return self._offset + now


class OutboxWriter:
    """Accepts messages durably and serves the admin API; delivers nothing.

    What the worker processes beside the deliverer use: usable at once, no
    ``run``. ``clock`` returns epoch seconds.
    """

    def __init__(
        self, store: Store, spool: Spool, *, clock: Callable[[], float] | None = None
    ) -> None:
        self._store = store
        self._spool = spool
        self._clock = clock or WallClock()
        self.stats = OutboxStats()

    def _due_now(self) -> None:
        """A message became due now: a deliverer in this process looks at once."""

    async def accept(
        self,
        target: str,
        payload: Mapping[str, Any],
        *,
        body: bytes | None = None,
        body_file: Path | None = None,
        cid: str,
    ) -> str:
        """Store a message for ``target`` durably and return its id.

        ``body`` is spooled; ``body_file`` is a file already written in the
        spool's ``incoming/`` area (a durable channel's ``receive_body`` streams
        it there), moved into place.
        Raises OutboxUnavailable (nothing kept) when the disk, the database or
        the spool refuses the message, and TypeError when ``payload`` is not
        JSON-serialisable.
        """
        if body is not None and body_file is not None:
            raise ValueError("pass body or body_file, not both")
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"outbox payload for {target!r} must be JSON-serialisable: {exc}"
            ) from exc
        now = self._clock()
        message_id = new_message_id(now)
        body_size = None
        if body is not None:
            body_size = await self._spool.store_bytes(message_id, body)
        elif body_file is not None:
            body_size = await self._spool.commit(message_id, body_file)
        message = Message(
            id=message_id,
            target=target,
            payload=dict(payload),
            cid=cid,
            created_at=now,
            next_attempt_at=now,
            updated_at=now,
            body_size=body_size,
        )
        try:
            await self._store.add(message)
        except BaseException:
            if body_size is not None:  # no row, so no body either
                with trio.CancelScope(shield=True):
                    await self._spool.discard(message_id)
            raise
        self.stats.accepted += 1
        log.info(
            "outbox_accepted", message_id=message_id, cid=cid, target=target, body_size=body_size
        )
        self._due_now()
        return message_id

    async def get(self, message_id: str) -> Message | None:
        """Return the message, or None."""
        return await self._store.get(message_id)

    async def list(
        self, state: MessageState | None = None, limit: int = 100, offset: int = 0
    ) -> list[Message]:
        """Return messages in acceptance order, optionally only those in ``state``."""
        return await self._store.list(state, limit, offset)

    async def counts(self) -> dict[MessageState, int]:
        """Return the number of messages in each state."""
        return await self._store.counts()

    async def oldest_pending_age(self) -> float | None:
        """Return the age in seconds of the oldest undelivered message, or None."""
        created = await self._store.oldest_pending_created_at()
        return None if created is None else max(0.0, self._clock() - created)

    async def retry(self, message_id: str) -> bool:
        """Make a dead (or waiting) message due now with a fresh attempt count.

        Returns False when there is no such message or it is being delivered or
        was delivered. The deliverer picks it up at once when it runs in this
        process, otherwise at its next poll.
        """
        retried = await self._store.retry(message_id, self._clock())
        if retried:
            log.info("outbox_retry", message_id=message_id)
            self._due_now()
        return retried

    async def delete(self, message_id: str) -> bool:
        """Forget a message and its body; False when unknown or being delivered."""
        deleted = await self._store.delete(message_id)
        if deleted:
            await self._spool.discard(message_id)
            log.info("outbox_deleted", message_id=message_id)
        return deleted


class Outbox(OutboxWriter):
    """The one deliverer: accepts like any writer, and delivers through ``deliver``.

    Deliveries start once ``await nursery.start(outbox.run)`` returned.
    ``per_target_concurrency`` caps concurrent deliveries to one target,
    ``max_concurrency`` all of them. Delivered messages are forgotten after
    ``retention`` seconds (None keeps them). The store is polled every
    ``poll_interval`` seconds for messages of other processes (None: no other
    process writes to it). Orphaned spool files are removed after
    ``incoming_max_age`` and ``body_max_age`` seconds (see the module
    docstring). ``clock`` returns epoch seconds.
    """

    def __init__(
        self,
        store: Store,
        spool: Spool,
        *,
        deliver: Deliver,
        max_attempts: int = 10,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        per_target_concurrency: int = 4,
        max_concurrency: int = 64,
        retention: float | None = 86400.0,
        poll_interval: float | None = 0.2,
        incoming_max_age: float = 3600.0,
        body_max_age: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if max_attempts < 1 or per_target_concurrency < 1 or max_concurrency < 1:
            raise ValueError(
                "max_attempts, per_target_concurrency and max_concurrency must be 1 or more"
            )
        super().__init__(store, spool, clock=clock)
        self._deliver = deliver
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._per_target = per_target_concurrency
        self._max_concurrency = max_concurrency
        self._retention = retention
        self._poll_interval = poll_interval
        self._incoming_max_age = incoming_max_age
        self._body_max_age = body_max_age
        self._wake = trio.Event()
        self._idle = trio.Event()
        self._settled = trio.Event()
        self._in_flight = 0

    async def run(self, *, task_status: trio.TaskStatus[Outbox] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover, report ready (``nursery.start`` returns this Outbox), deliver until cancelled.

        Recovery puts interrupted deliveries back to pending and removes
        orphaned spool files. A store that fails (e.g. its disk is full) ends
        ``run`` with OutboxUnavailable: after a restart, recovery resumes.
        """
        reset = await self._store.recover()
        orphans = await self._remove_orphans()
        log.info("outbox_recovered", reset_to_pending=reset, orphans_removed=orphans)
        async with trio.open_nursery() as nursery:
            if self._retention is not None:
                nursery.start_soon(self._prune_forever, self._retention)
            nursery.start_soon(self._sweep_forever)
            task_status.started(self)
            await self._dispatch_forever(nursery)

    async def _dispatch_forever(self, nursery: trio.Nursery) -> None:
        while True:
            # A fresh event before looking, so a wake-up during the look is not lost.
            self._wake = trio.Event()
            now = self._clock()
            free = self._max_concurrency - self._in_flight
            claimed = []
            if free > 0:
                claimed = await self._store.claim_due(now, free, per_target=self._per_target)
            for message in claimed:
                self._in_flight += 1
                nursery.start_soon(self._deliver_one, message)
            if claimed:
                self._busy()
            elif self._in_flight == 0:
                self._idle.set()
            # Due messages left unclaimed wait for a free slot, and a finished delivery wakes us.
            next_due = await self._store.next_due_after(now)
            if not claimed and self._in_flight == 0 and next_due is None:
                self._settled.set()
            deadline = math.inf
            if next_due is not None:
                deadline = trio.current_time() + (next_due - self._clock())
            if self._poll_interval is not None and self._in_flight < self._max_concurrency:
                deadline = min(deadline, trio.current_time() + self._poll_interval)
            with trio.move_on_at(deadline):
                await self._wake.wait()

    def _busy(self) -> None:
        if self._idle.is_set():
            self._idle = trio.Event()
        if self._settled.is_set():
            self._settled = trio.Event()

    def _due_now(self) -> None:
        self._busy()
        self._wake.set()

    async def wait_idle(self) -> None:
        """Return once nothing is being delivered and nothing is due now.

        A message waiting for its back-off counts as idle. Meant for tests and
        for an orderly stop.
        """
        await self._idle.wait()

    async def wait_settled(self) -> None:
        """Return once every message is delivered or dead: none pending, none in flight.

        Unlike `wait_idle`, messages waiting for their back-off are waited for.
        """
        await self._settled.wait()

    async def _deliver_one(self, message: Message) -> None:
        body = self._spool.body_path(message.id) if message.body_size is not None else None
        try:
            try:
                await self._deliver(message, body)
            except Exception as exc:  # error boundary: the target failed this attempt
                await self._failed(message, exc)
            else:
                await self._delivered(message)
        finally:
            self._in_flight -= 1
            self._wake.set()

    async def _delivered(self, message: Message) -> None:
        await self._store.mark_delivered(message.id, self._clock())
        if message.body_size is not None:
            await self._spool.discard(message.id)
        self.stats.delivered += 1
        log.info(
            "outbox_delivered",
            message_id=message.id,
            cid=message.cid,
            target=message.target,
            attempt=message.attempts,
        )

    async def _failed(self, message: Message, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_LENGTH]
        context = {"message_id": message.id, "cid": message.cid, "target": message.target}
        now = self._clock()
        self.stats.failed_attempts += 1
        if message.attempts >= self._max_attempts:
            await self._store.mark_failed(message.id, error, now, None)
            self.stats.dead += 1
            log.error("outbox_dead", **context, attempts=message.attempts, error=error)
            return
        delay = random.uniform(0.0, self._backoff_cap(message.attempts))
        await self._store.mark_failed(message.id, error, now, now + delay)
        log.warning(
            "outbox_attempt_failed",
            **context,
            attempt=message.attempts,
            next_in=round(delay, 3),
            error=error,
        )

    def _backoff_cap(self, attempt: int) -> float:
        """Return the longest wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(attempt - 1, 62)  # beyond this the cap is backoff_max anyway
        return float(min(self._backoff_max, self._backoff_base * 2**exponent))

    async def _prune_forever(self, retention: float) -> None:
        interval = max(1.0, min(retention, 3600.0))
        while True:
            pruned = await self._store.prune(self._clock() - retention)
            if pruned:
                log.info("outbox_pruned", count=pruned)
            await trio.sleep(interval)

    async def _sweep_forever(self) -> None:
        while True:
            await trio.sleep(_SWEEP_INTERVAL)
            try:
                removed = await self._remove_orphans()
            except OutboxUnavailable as exc:  # the next sweep tries again; delivery goes on
                log.warning("outbox_sweep_failed", reason=exc.reason, error=str(exc))
            else:
                if removed:
                    log.info("outbox_orphans_removed", count=removed)

    async def _remove_orphans(self) -> int:
        """Remove the spool files no message needs, old enough to be nobody's work in progress."""
        spool = self._spool
        incoming = await spool.old_files(spool.incoming, self._incoming_max_age)
        bodies = await spool.old_files(spool.bodies, self._body_max_age)
        keep = await self._store.body_ids()  # after the listing: see the module docstring
        orphans = incoming + [path for path in bodies if path.name not in keep]
        await spool.remove(orphans)
        return len(orphans)
