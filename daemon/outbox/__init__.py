"""Durable outbox: accept a message once it is on disk, deliver it at least once.

Typical wiring, in the one deliverer process::

    store = await SqliteStore.open(state / "outbox.sqlite")
    spool = await Spool.open(state / "spool")
    outbox = Outbox(store, spool, deliver=deliver)
    await nursery.start(outbox.run)
    message_id = await outbox.accept(target, {"file_name": name}, body=data, cid=cid)

and in every other process on the same files, ``OutboxWriter(store, spool)``
(accept and admin only; the deliverer polls for what it accepts).
"""

from __future__ import annotations

from daemon.outbox._delivery import Deliver, Outbox, OutboxStats, OutboxWriter, WallClock
from daemon.outbox._spool import Spool, unavailable
from daemon.outbox._sqlite import SqliteStore
from daemon.outbox._store import Message, MessageState, Store, new_message_id

__all__ = [
    "Deliver",
    "Message",
    "MessageState",
    "Outbox",
    "OutboxStats",
    "OutboxWriter",
    "Spool",
    "SqliteStore",
    "Store",
    "WallClock",
    "new_message_id",
    "unavailable",
]
