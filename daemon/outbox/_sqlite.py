"""The outbox store on SQLite: one file shared by the worker processes of one machine.

Durability: the database runs in WAL mode with ``synchronous=FULL``, so every
COMMIT fsyncs the WAL before it returns; in WAL mode ``NORMAL`` would only
fsync at checkpoints and a power cut could undo the last acceptances. FULL is
kept for every write, not only for acceptance: a message's body file is
unlinked right after its ``delivered`` commit, and a commit that could be
undone by a power cut would leave a pending row whose body is gone. SQLite
fsyncs the directory when it creates the WAL; we fsync it once when we create
the database file.

Several processes: every worker accepts into the same file, one of them (the
deliverer) also claims and records outcomes. Locking is SQLite's normal one
over WAL: readers never wait, and writers take turns. Every write is one
``BEGIN IMMEDIATE`` transaction, which takes the write lock before it reads,
so a claim's read-then-update cannot interleave with another process's write
(no lost claim, no double claim, even with two claimers), and no transaction
ever has to upgrade a stale read snapshot (which would fail at once instead of
waiting). A writer that finds the lock taken waits up to ``busy_timeout``
seconds; a database locked for longer becomes
``OutboxUnavailable("database busy")``. A claim first looks, without the write
lock, whether anything is due, so the deliverer's idle polling never makes the
acceptors wait.

This store used to hold ``locking_mode=EXCLUSIVE``, which also refused a
second daemon on the same file. That protection is gone: recovery
(:meth:`SqliteStore.recover`) resets every ``delivering`` row, so two
deliverers on one file would deliver each other's in-flight messages again.
The deliverer role must be unique per machine (per state directory); the
supervisor ensures that by giving it to worker 0 only. Daemons on several
machines sharing one outbox is the job of a PostgreSQL store.

Threads: sqlite3 blocks, so every call runs in a worker thread through a
CapacityLimiter(1) over one connection per process, opened with
``check_same_thread=False``. The limiter serialises all use of the connection;
Trio's thread cache makes this nearly as cheap as a dedicated thread, without
owning one. Thread calls are not abandoned on cancellation, so a commit that
started always finishes and is reported.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

import trio

from daemon._fsync import fsync_directory
from daemon.exceptions import OutboxUnavailable
from daemon.outbox._store import Message, MessageState

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    cid TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    body_size INTEGER
);
CREATE INDEX IF NOT EXISTS messages_by_state ON messages (state, next_attempt_at);
"""

_COLUMNS = (
    "id, target, payload, cid, created_at, state, attempts, "
    "next_attempt_at, updated_at, last_error, body_size"
)

_REASONS = {
    sqlite3.SQLITE_FULL: "disk full",
    sqlite3.SQLITE_READONLY: "database not writable",
    sqlite3.SQLITE_CANTOPEN: "database not writable",
    sqlite3.SQLITE_PERM: "database not writable",
    sqlite3.SQLITE_IOERR: "database I/O error",
    sqlite3.SQLITE_BUSY: "database busy",
    sqlite3.SQLITE_LOCKED: "database busy",
}


def _message(row: tuple[Any, ...]) -> Message:
    (id_, target, payload, cid, created, state, attempts, due, updated, error, size) = row
    return Message(
        id=id_,
        target=target,
        payload=json.loads(payload),
        cid=cid,
        created_at=created,
        state=MessageState(state),
        attempts=attempts,
        next_attempt_at=due,
        updated_at=updated,
        last_error=error,
        body_size=size,
    )


class SqliteStore:
    """The :class:`~daemon.outbox.Store` on one SQLite file; see the module docstring.

    Create with ``await SqliteStore.open(path)``; close with :meth:`aclose` or
    use it as an async context manager.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection = connection
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float = 5.0) -> SqliteStore:
        """Open (creating if needed) the database at ``path``.

        Other processes may have it open too; a write waits up to
        ``busy_timeout`` seconds for theirs. Raises OutboxUnavailable when the
        file cannot be opened or written, or stays locked longer than that.
        """
        connection = await trio.to_thread.run_sync(cls._connect, path, busy_timeout)
        store = cls(path, connection)
        try:
            await store._call(store._prepare_exclusively)
        except BaseException:
            await trio.to_thread.run_sync(connection.close)
            raise
        return store

    @staticmethod
    def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            _raise_unavailable(exc, path)
            raise

    def _prepare_exclusively(self) -> None:
        """`_prepare`, one process at a time: several workers start together, and
        switching a new database to WAL takes a lock SQLite's busy timeout does
        not wait for."""
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._prepare()

    def _prepare(self) -> None:
        connection = self._connection
        created = not self.path.exists() or self.path.stat().st_size == 0
        (mode,) = connection.execute("PRAGMA journal_mode=WAL").fetchone()
        if mode != "wal":
            raise OutboxUnavailable("database cannot use WAL", f"{self.path}: journal {mode}")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(_SCHEMA)
        if created:
            fsync_directory(self.path.parent)

    async def aclose(self) -> None:
        """Close the connection (after any call in progress)."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._connection.close, limiter=self._limiter)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        try:
            return await trio.to_thread.run_sync(function, *args, limiter=self._limiter)
        except sqlite3.Error as exc:
            _raise_unavailable(exc, self.path)
            raise

    async def _write(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run ``function(connection, *args)`` in one write transaction."""
        return await self._call(self._transaction, function, *args)

    def _transaction(self, function: Callable[..., _T], *args: Any) -> _T:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = function(connection, *args)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return result

    async def _changed(self, sql: str, *args: Any) -> bool:
        """Run one conditional UPDATE/DELETE on a single row; say whether it matched."""
        cursor = await self._write(sqlite3.Connection.execute, sql, args)
        return cursor.rowcount == 1

    async def _fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self._call(lambda: self._connection.execute(sql, args).fetchall())

    async def add(self, message: Message) -> None:
        values = (
            message.id,
            message.target,
            json.dumps(message.payload, separators=(",", ":")),
            message.cid,
            message.created_at,
            message.state,
            message.attempts,
            message.next_attempt_at,
            message.updated_at,
            message.last_error,
            message.body_size,
        )
        await self._write(
            sqlite3.Connection.execute,
            f"INSERT INTO messages ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )

    async def claim_due(
        self, now: float, limit: int, *, per_target: int | None = None
    ) -> list[Message]:
        return await self._call(self._claim_if_due, now, limit, per_target)

    def _claim_if_due(self, now: float, limit: int, per_target: int | None) -> list[Message]:
        # A read first, so that an idle poll never takes the write lock.
        (due,) = self._connection.execute(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE state = 'pending'"
            " AND next_attempt_at <= ?)",
            (now,),
        ).fetchone()
        return self._transaction(_claim_due, now, limit, per_target) if due else []

    async def mark_delivered(self, message_id: str, now: float) -> bool:
        return await self._changed(
            "UPDATE messages SET state = 'delivered', updated_at = ?"
            " WHERE id = ? AND state = 'delivering'",
            now,
            message_id,
        )

    async def mark_failed(
        self, message_id: str, error: str, now: float, next_attempt_at: float | None
    ) -> bool:
        state = MessageState.PENDING if next_attempt_at is not None else MessageState.DEAD
        return await self._changed(
            "UPDATE messages SET state = ?, last_error = ?, updated_at = ?,"
            " next_attempt_at = coalesce(?, next_attempt_at)"
            " WHERE id = ? AND state = 'delivering'",
            state,
            error,
            now,
            next_attempt_at,
            message_id,
        )

    async def retry(self, message_id: str, now: float) -> bool:
        return await self._changed(
            "UPDATE messages SET state = 'pending', attempts = 0, next_attempt_at = ?,"
            " updated_at = ? WHERE id = ? AND state IN ('pending', 'dead')",
            now,
            now,
            message_id,
        )

    async def delete(self, message_id: str) -> bool:
        return await self._changed(
            "DELETE FROM messages WHERE id = ? AND state != 'delivering'", message_id
        )

    async def get(self, message_id: str) -> Message | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", message_id)
        return _message(rows[0]) if rows else None

    async def list(
        self, state: MessageState | None = None, limit: int = 100, offset: int = 0
    ) -> list[Message]:
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE ?1 IS NULL OR state = ?1"
            " ORDER BY seq LIMIT ?2 OFFSET ?3",
            state,
            limit,
            offset,
        )
        return [_message(row) for row in rows]

    async def counts(self) -> dict[MessageState, int]:
        rows = await self._fetch("SELECT state, count(*) FROM messages GROUP BY state")
        counts = dict.fromkeys(MessageState, 0)
        counts.update({MessageState(state): count for state, count in rows})
        return counts

    async def oldest_pending_created_at(self) -> float | None:
        rows = await self._fetch(
            "SELECT min(created_at) FROM messages WHERE state IN ('pending', 'delivering')"
        )
        return rows[0][0]  # type: ignore[no-any-return]

    async def next_due_after(self, now: float) -> float | None:
        rows = await self._fetch(
            "SELECT min(next_attempt_at) FROM messages"
            " WHERE state = 'pending' AND next_attempt_at > ?",
            now,
        )
        return rows[0][0]  # type: ignore[no-any-return]

    async def body_ids(self) -> set[str]:
        rows = await self._fetch(
            "SELECT id FROM messages WHERE body_size IS NOT NULL AND state != 'delivered'"
        )
        return {message_id for (message_id,) in rows}

    async def recover(self) -> int:
        cursor = await self._write(
            sqlite3.Connection.execute,
            "UPDATE messages SET state = 'pending' WHERE state = 'delivering'",
        )
        return cursor.rowcount

    async def prune(self, delivered_before: float) -> int:
        cursor = await self._write(
            sqlite3.Connection.execute,
            "DELETE FROM messages WHERE state = 'delivered' AND updated_at < ?",
            (delivered_before,),
        )
        return cursor.rowcount


def _claim_due(
    connection: sqlite3.Connection, now: float, limit: int, per_target: int | None
) -> list[Message]:
    """Claim oldest-due first, skipping targets that reach ``per_target`` in flight.

    Targets already full are excluded in SQL; a target that fills up while
    claiming a batch is excluded by querying again, at most once per target,
    so a long backlog of one busy target is skipped by the index, not in Python.
    """
    in_flight: dict[str, int] = dict(
        connection.execute(
            "SELECT target, count(*) FROM messages WHERE state = 'delivering' GROUP BY target"
        ).fetchall()
    )
    full = {target for target, count in in_flight.items() if _is_full(count, per_target)}
    claimed: list[Message] = []
    while len(claimed) < limit:
        rows = connection.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE state = 'pending' AND next_attempt_at <= ?"
            " AND target NOT IN (SELECT value FROM json_each(?))"
            " ORDER BY next_attempt_at, seq LIMIT ?",
            (now, json.dumps(sorted(full)), limit - len(claimed)),
        ).fetchall()
        batch = []
        for row in rows:
            message = _message(row)
            if message.target in full:
                continue
            batch.append(message)
            in_flight[message.target] = in_flight.get(message.target, 0) + 1
            if _is_full(in_flight[message.target], per_target):
                full.add(message.target)
        connection.execute(
            "UPDATE messages SET state = 'delivering', attempts = attempts + 1, updated_at = ?"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (now, json.dumps([message.id for message in batch])),
        )
        claimed += [
            dataclasses.replace(
                message,
                state=MessageState.DELIVERING,
                attempts=message.attempts + 1,
                updated_at=now,
            )
            for message in batch
        ]
        if len(batch) == len(rows):
            break  # nothing skipped: either the limit is reached or nothing more is due
    return claimed


def _is_full(count: int, per_target: int | None) -> bool:
    return per_target is not None and count >= per_target


def _raise_unavailable(exc: sqlite3.Error, path: Path) -> None:
    """Raise OutboxUnavailable for errors of the disk or the file; return for the others."""
    reason = _REASONS.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF)
    if reason is not None:
        raise OutboxUnavailable(reason, f"{path}: {exc}") from exc
