"""The outbox's message record and the narrow storage interface behind it.

The outbox talks to storage only through :class:`Store`, so that a
PostgreSQL store (several machines sharing one outbox) can follow the SQLite
one. Several processes may use one store at once: all of them add messages and
read, exactly one of them (the deliverer) claims, records outcomes, recovers
and prunes. Every time a store needs is passed in by the caller; stores keep
no clock.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
from collections.abc import Mapping
from typing import Any, Protocol


class MessageState(enum.StrEnum):
    """Where a message is in its life.

    ``pending`` waits for its ``next_attempt_at``; ``delivering`` is claimed by
    a worker; ``delivered`` and ``dead`` are final until an admin retries a dead
    one.
    """

    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One accepted message, as stored.

    Times are seconds since the epoch. ``attempts`` counts the deliveries
    started so far (a claim counts as an attempt). ``body_size`` is the size of
    the spooled body in bytes, or None when the message has no body.
    ``last_error`` is the text of the last failure (the exception's type and
    message, never a secret: delivery code must not put one there).
    """

    id: str
    target: str
    payload: Mapping[str, Any]
    cid: str
    created_at: float
    state: MessageState = MessageState.PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    updated_at: float = 0.0
    last_error: str | None = None
    body_size: int | None = None


def new_message_id(now: float) -> str:
    """Return a fresh id that sorts by acceptance time: 12 hex digits of ms, 16 random."""
    return f"{int(now * 1000):012x}{secrets.token_hex(8)}"


class Store(Protocol):
    """What the outbox needs from durable storage.

    Every method that changes state is durable when it returns. State changes
    are conditional: a method that finds the message in the wrong state (or
    missing) changes nothing and says so by returning False.
    """

    async def add(self, message: Message) -> None:
        """Record a new message; durable when this returns."""
        ...

    async def claim_due(
        self, now: float, limit: int, *, per_target: int | None = None
    ) -> list[Message]:
        """Atomically move up to ``limit`` due pending messages to ``delivering``.

        Oldest due first. ``per_target`` caps how many messages of one target
        may be ``delivering`` at once, counting those claimed earlier. Each
        claimed message's ``attempts`` is incremented. Safe against concurrent
        claims and adds from other processes. (PostgreSQL: ``SELECT ... FOR
        UPDATE SKIP LOCKED``; SQLite: one ``BEGIN IMMEDIATE`` transaction.)
        """
        ...

    async def mark_delivered(self, message_id: str, now: float) -> bool:
        """``delivering`` -> ``delivered``."""
        ...

    async def mark_failed(
        self, message_id: str, error: str, now: float, next_attempt_at: float | None
    ) -> bool:
        """``delivering`` -> ``pending`` at ``next_attempt_at``, or ``dead`` when it is None."""
        ...

    async def retry(self, message_id: str, now: float) -> bool:
        """``dead`` or ``pending`` -> ``pending`` due now, with ``attempts`` reset to 0."""
        ...

    async def delete(self, message_id: str) -> bool:
        """Forget a message that is not being delivered."""
        ...

    async def get(self, message_id: str) -> Message | None:
        """Return the message, or None."""
        ...

    async def list(
        self, state: MessageState | None = None, limit: int = 100, offset: int = 0
    ) -> list[Message]:
        """Return messages in acceptance order, optionally only those in ``state``."""
        ...

    async def counts(self) -> dict[MessageState, int]:
        """Return the number of messages in each state (every state present)."""
        ...

    async def oldest_pending_created_at(self) -> float | None:
        """Return when the oldest undelivered (pending or delivering) message was accepted."""
        ...

    async def next_due_after(self, now: float) -> float | None:
        """Return the earliest ``next_attempt_at`` of a pending message strictly after ``now``."""
        ...

    async def body_ids(self) -> set[str]:
        """Return the ids of messages whose body must stay spooled (not delivered)."""
        ...

    async def recover(self) -> int:
        """Move every ``delivering`` message back to ``pending``; return how many.

        Run once at start-up of the one deliverer, before any claim: a
        delivery that was in flight when it stopped is tried again
        (at-least-once). Never from an accept-only process: it would reset the
        running deliverer's deliveries, which would then be made twice.
        """
        ...

    async def prune(self, delivered_before: float) -> int:
        """Forget delivered messages whose delivery is older than the given time."""
        ...
