"""Durable delivery: the outbox, wired to the router.

A durable message is a JSON envelope plus an optional body file:

- ``{"kind": "http", "request": {...}, "payload": ...}`` for a REST channel
  with ``delivery = "durable"``: delivered by calling the channel's service
  with the request rebuilt, the body being the outbox's spooled file;
- ``{"kind": "invoke", "payload": ...}`` for ``invoke_async(..., durable=True)``;
  a bytes payload travels as the body, bytes inside a dict or list as
  ``{"$bytes": "<base64>"}`` (so the Zato connector's ``{"file_name", "data"}``
  goes through as it is; keep those small, the row holds them).

Delivery is at least once: a service must tolerate running twice for one
message (the reference connector's upload of the same bytes to the same path
is an identical overwrite).

The outbox is one SQLite file and one spool directory under ``<state>/outbox``,
shared by every worker process: each accepts into it and serves the admin API
(counts, list, retry, delete), and exactly one, the deliverer (worker 0), also
recovers, delivers and removes orphaned files. The deliverer polls the store,
so it delivers what the other workers accepted or retried within its poll
interval (0.2 s), with no other link between the processes.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import structlog
import trio

from ._actor import Message
from ._config import OutboxConfig
from ._router import Router
from .http import HttpRequest, RequestBody
from .outbox import Message as OutboxMessage
from .outbox import Outbox, OutboxWriter, Spool, SqliteStore

__all__ = ["DurableOutbox", "run_outbox"]

log = structlog.get_logger(__name__)


class DurableOutbox:
    """The running outbox and its spool, as channels, services and the admin API use them.

    ``outbox`` is the deliverer (an `Outbox`) in the deliverer process, an
    accept-only `OutboxWriter` in the others.
    """

    def __init__(self, outbox: OutboxWriter, spool: Spool) -> None:
        self.outbox = outbox
        self.spool = spool

    async def accept_invoke(self, target: str, payload: Any, cid: str) -> str:
        """Keep an invoke durably; bytes travel as the body. Returns the message id."""
        if isinstance(payload, bytes):
            return await self.outbox.accept(target, {"kind": "invoke"}, body=payload, cid=cid)
        envelope = {"kind": "invoke", "payload": _encode(payload)}
        return await self.outbox.accept(target, envelope, cid=cid)

    async def accept_http(
        self, target: str, request: dict[str, Any], payload: Any, body: RequestBody, cid: str
    ) -> str:
        """Keep a channel request durably, its body moved from the spool's incoming area."""
        envelope = {"kind": "http", "request": request, "payload": payload}
        if body.path is None:
            return await self.outbox.accept(target, envelope, body=body.read(), cid=cid)
        return await self.outbox.accept(target, envelope, body_file=body.path, cid=cid)


def _deliverer(router: Router) -> Any:
    async def deliver(message: OutboxMessage, body_path: Path | None) -> None:
        envelope = message.payload
        if envelope["kind"] == "http":
            size = message.body_size or 0
            body = (
                RequestBody(path=body_path, size=size, owned=False)
                if body_path is not None
                else RequestBody()
            )
            http = HttpRequest.from_snapshot(envelope["request"], body)
            call = Message(envelope["payload"], message.cid, http)
            await router.call(message.target, call)
        elif body_path is not None:
            data = await trio.to_thread.run_sync(body_path.read_bytes)
            await router.invoke(message.target, data, cid=message.cid)
        else:
            await router.invoke(message.target, _decode(envelope.get("payload")), cid=message.cid)

    return deliver


def _encode(value: Any) -> Any:
    """JSON-ready ``value``: bytes anywhere inside become ``{"$bytes": base64}``."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


async def run_outbox(
    config: OutboxConfig,
    directory: Path,
    router: Router,
    *,
    deliverer: bool = True,
    task_status: trio.TaskStatus[DurableOutbox] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Open the store and spool under ``directory`` and serve until cancelled.

    The deliverer (one per machine) recovers and delivers; with
    ``deliverer=False`` the outbox only accepts, and serves the admin API.
    """
    await trio.to_thread.run_sync(lambda: directory.mkdir(parents=True, exist_ok=True))
    async with await SqliteStore.open(directory / "outbox.sqlite") as store:
        spool = await Spool.open(directory / "spool")
        if not deliverer:
            task_status.started(DurableOutbox(OutboxWriter(store, spool), spool))
            await trio.sleep_forever()
        outbox = Outbox(
            store,
            spool,
            deliver=_deliverer(router),
            max_attempts=config.max_attempts,
            backoff_base=config.backoff_base,
            backoff_max=config.backoff_max,
            per_target_concurrency=config.per_target_concurrency,
            retention=config.retention,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(outbox.run)
            task_status.started(DurableOutbox(outbox, spool))
