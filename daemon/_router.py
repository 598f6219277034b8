"""The router: service name -> the actor running its current version.

Deployments change the routing table in one step (`Router.swap`): the new
actors start first, then the table is replaced, then the replaced actors are
closed and drain on the code they started with. A caller that raced the swap
and finds a closed mailbox simply asks the table again, so no message is lost.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import structlog
import trio

from ._actor import Actor, Message, ServiceStats
from ._service import Resources, Response, Service
from .exceptions import InvokeTimeout, ServiceNotFound, ServiceUnavailable

if TYPE_CHECKING:
    from ._durable import DurableOutbox

__all__ = ["Router", "new_cid"]

log = structlog.get_logger(__name__)


def new_cid() -> str:
    """A fresh correlation id: 24 hex characters, unique enough to grep logs by.

    Not a secret, so Python's own generator serves: ``secrets`` would cost a
    system call on every request.
    """
    return f"{random.getrandbits(96):024x}"


class Router:
    """Maps service names to actors and delivers messages to them.

    ``resources`` are the outgoing connections handed to every service.
    """

    def __init__(self, *, resources: Resources | None = None) -> None:
        self.resources = resources or Resources()
        self._actors: dict[str, Actor] = {}
        self._stats: dict[str, ServiceStats] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._stopped = trio.Event()
        #: Set by the daemon once the outbox runs; durable invokes need it.
        self.outbox: DurableOutbox | None = None

    async def run(self, *, task_status: trio.TaskStatus[Router] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the actors; reports the router itself when ready.

        Returns once `close` was called and every actor has drained.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            await self._stopped.wait()

    # -- reading the table ------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._actors)

    def get(self, name: str) -> Actor:
        """Return the actor currently serving ``name``; raise ServiceNotFound."""
        try:
            return self._actors[name]
        except KeyError:
            raise ServiceNotFound(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._actors

    def stats(self, name: str) -> ServiceStats:
        """The counters of service ``name`` (created empty on first use)."""
        return self._stats.setdefault(name, ServiceStats())

    def all_stats(self) -> dict[str, ServiceStats]:
        """Counters of every service name seen, deployed now or not."""
        return dict(self._stats)

    # -- delivering messages ----------------------------------------------------------

    async def invoke(
        self,
        name: str,
        payload: Any = None,
        *,
        cid: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run service ``name`` on ``payload`` and return its response payload.

        Raises ServiceNotFound, InvokeTimeout (the target's work is cancelled),
        ServiceUnavailable (the daemon stopped first), or whatever the service raised.
        """
        message = Message(payload, cid or new_cid())
        return (await self.call(name, message, timeout=timeout)).payload

    async def call(self, name: str, message: Message, *, timeout: float | None = None) -> Response:
        """Deliver ``message`` to ``name`` and return the service's whole Response.

        What channels use; raises as `invoke` does. When the service has a
        free slot and an empty mailbox, the message runs in this task.
        """
        # An actor in the table is open: swap and close take actors out before closing them.
        actor = self._actors.get(name)
        if actor is not None and actor.can_run_inline():
            if await actor.process_inline(message, timeout):
                raise InvokeTimeout(name, timeout or 0)
            return self._outcome(name, message)
        try:
            if timeout is None:
                await self._deliver(name, message)
                await message.done.wait()
            else:
                with trio.move_on_after(timeout):
                    await self._deliver(name, message)
                    await message.done.wait()
                if not message.done.is_set():
                    raise InvokeTimeout(name, timeout)
        finally:
            if not message.done.is_set():
                message.abandon()
        return self._outcome(name, message)

    @staticmethod
    def _outcome(name: str, message: Message) -> Response:
        if message.error is not None:
            raise message.error
        if message.response is None:
            raise ServiceUnavailable(f"service {name!r} was stopped before it answered")
        return message.response

    async def send(self, name: str, payload: Any = None, *, cid: str | None = None) -> str:
        """Queue a message for ``name`` without waiting for it to run; return its cid."""
        message = Message(payload, cid or new_cid())
        await self._deliver(name, message)
        return message.cid

    async def send_durable(self, name: str, payload: Any = None, *, cid: str | None = None) -> str:
        """Keep a message for ``name`` in the outbox; return its id once it is on disk.

        Raises ServiceUnavailable when this process has no outbox, OutboxUnavailable
        when the disk refuses the message, TypeError when the payload is not JSON.
        """
        if self.outbox is None:
            raise ServiceUnavailable("durable delivery is not available in this process")
        return await self.outbox.accept_invoke(name, payload, cid or new_cid())

    async def _deliver(self, name: str, message: Message) -> None:
        while True:
            if self._closing:
                raise ServiceUnavailable("the daemon is stopping")
            actor = self._actors.get(name)
            if actor is None:
                raise ServiceNotFound(name)
            try:
                await actor.put(message)
                return
            except trio.ClosedResourceError:
                continue  # redeployed while we waited: the table has its successor

    # -- changing the table -----------------------------------------------------------

    async def swap(self, remove: Iterable[str], add: Iterable[type[Service]]) -> None:
        """Replace the services named in ``remove`` by the classes in ``add``, in one step.

        The new actors start before the table changes; the old ones drain
        afterwards. The caller (the deployer) checks names for clashes first.
        """
        assert self._nursery is not None, "Router.run has not started"
        started = {}
        for service in add:
            actor = Actor(service, router=self, stats=self.stats(service.name))
            await self._nursery.start(actor.run)
            started[service.name] = actor
        table = dict(self._actors)
        retired = [table.pop(name) for name in remove if name in table]
        table.update(started)
        self._actors = table
        for actor in retired:
            actor.close()

    async def close(self, grace: float) -> None:
        """Stop taking messages; let queued and running ones finish within ``grace`` seconds.

        What is still running after that is cancelled; its callers get
        ServiceUnavailable.
        """
        self._closing = True
        actors, self._actors = list(self._actors.values()), {}
        for actor in actors:
            actor.close()
        with trio.move_on_after(grace):
            for actor in actors:
                await actor.closed.wait()
        drained = all(actor.closed.is_set() for actor in actors)
        if not drained and self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        self._stopped.set()
        log.info("router_closed", drained=drained)
