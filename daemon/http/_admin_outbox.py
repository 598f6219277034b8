"""Admin routes for the durable outbox: ``/admin/outbox...``."""

from __future__ import annotations

import dataclasses
from typing import Any

from quart import Response, request

from ..outbox import Message, MessageState
from ._admin_base import AdminContext, Routes, json_error, json_response
from ._machine import merge_outbox_stats

__all__ = ["add_outbox_routes"]


def add_outbox_routes(routes: Routes, context: AdminContext) -> None:
    """Counts, messages by state, retry and delete."""
    outbox = context.outbox.outbox

    @routes.add("GET", "/admin/outbox", "Messages by state, oldest pending age, counters.")
    async def summary() -> Response:
        # Counts come from the shared store; counters are per process: add them up.
        counts = await outbox.counts()
        workers, missing = await context.machine.figures()
        return json_response(
            {
                "counts": {str(state): count for state, count in counts.items()},
                "oldest_pending_age": await outbox.oldest_pending_age(),
                "stats": dataclasses.asdict(merge_outbox_stats(workers)),
                "missing": missing,
            }
        )

    @routes.add("GET", "/admin/outbox/messages", "Messages, optionally ?state=pending|dead|...")
    async def messages() -> Response:
        state_name = request.args.get("state")
        try:
            state = MessageState(state_name) if state_name else None
            limit = int(request.args.get("limit", "100"))
            offset = int(request.args.get("offset", "0"))
        except ValueError:
            states = ", ".join(s.value for s in MessageState)
            return json_error(400, f"state must be one of {states}; limit and offset numbers")
        found = await outbox.list(state, limit=min(limit, 1000), offset=offset)
        return json_response({"messages": [_message(m) for m in found]})

    @routes.add("POST", "/admin/outbox/messages/{message_id}/retry", "Deliver a message again now.")
    async def retry(message_id: str) -> Response:
        if not await outbox.retry(message_id):
            return json_error(404, f"no pending or dead message {message_id!r}")
        return json_response({"message_id": message_id, "state": "pending"})

    @routes.add("DELETE", "/admin/outbox/messages/{message_id}", "Forget a message.")
    async def delete(message_id: str) -> Response:
        if not await outbox.delete(message_id):
            return json_error(404, f"no message {message_id!r} that is not being delivered")
        return Response(b"", status=204)


def _message(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "target": message.target,
        "cid": message.cid,
        "state": str(message.state),
        "attempts": message.attempts,
        "created_at": message.created_at,
        "next_attempt_at": message.next_attempt_at,
        "last_error": message.last_error,
        "body_size": message.body_size,
    }
