"""One actor per deployed service: a bounded mailbox and supervised workers.

An `Actor` owns one version of one service class. Callers put a `Message`
into its mailbox (a Trio memory channel, so a full mailbox makes callers
wait: back pressure, not unbounded memory); ``concurrency`` worker tasks take
messages out and run a fresh service instance for each. A service that raises
fails that message only: the exception goes to the caller and the worker
takes the next message. Closing the actor (on redeploy or undeploy) closes
the mailbox; workers finish what is queued on the code they started with.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ._logging import current_cid
from ._service import Request, Response, Service, SimpleIODeclaration

if TYPE_CHECKING:
    from ._router import Router
    from .http._request import HttpRequest

__all__ = ["Actor", "Message", "ServiceStats"]

#: Sync ``handle`` methods run in threads; this bounds them across all services.
SERVICE_THREADS = trio.CapacityLimiter(64)


class Message:
    """One request to a service, with the slot its result goes into.

    The caller waits on ``done``; if it gives up (timeout or its own
    cancellation) it calls `abandon`, which cancels the work if it started and
    makes workers skip it if it has not.
    """

    __slots__ = ("_scope", "abandoned", "cid", "done", "error", "http", "payload", "response")

    def __init__(self, payload: Any, cid: str, http: HttpRequest | None = None) -> None:
        self.payload = payload
        self.cid = cid
        self.http = http
        self.done = trio.Event()
        #: Once ``done``: the service's response, or the exception it raised;
        #: neither when the work was cancelled.
        self.response: Response | None = None
        self.error: Exception | None = None
        self.abandoned = False
        self._scope: trio.CancelScope | None = None

    def abandon(self) -> None:
        self.abandoned = True
        if self._scope is not None:
            self._scope.cancel()


#: Upper bounds (seconds) of the latency histogram exported to Prometheus.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class ServiceStats:
    """Counters for one service name; they survive redeploys of that name.

    Plain numbers per process, so that several processes' stats add up.
    """

    invocations: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    #: Invocations per latency bucket (the last one is +Inf), not cumulative.
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    #: The most recent latencies, for percentiles without unbounded memory.
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=1024))

    def record(self, seconds: float, *, failed: bool) -> None:
        self.invocations += 1
        self.errors += failed
        self.total_seconds += seconds
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.recent.append(seconds)

    def to_json(self) -> dict[str, Any]:
        """The counters as JSON, for another process to rebuild (`from_json`) and `add`."""
        return {
            "invocations": self.invocations,
            "errors": self.errors,
            "total_seconds": self.total_seconds,
            "buckets": self.buckets,
            "recent": list(self.recent),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceStats:
        stats = cls(
            invocations=data["invocations"],
            errors=data["errors"],
            total_seconds=data["total_seconds"],
            buckets=list(data["buckets"]),
        )
        stats.recent.extend(data["recent"])
        return stats

    def add(self, other: ServiceStats) -> None:
        """Add ``other``'s counters to these: several processes' figures for one machine."""
        self.invocations += other.invocations
        self.errors += other.errors
        self.total_seconds += other.total_seconds
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        # Every process's recent latencies together: bounded, since each process's are.
        self.recent = deque([*self.recent, *other.recent])

    def summary(self) -> dict[str, Any]:
        """Count, errors, mean and p99 latency in milliseconds, for the admin API."""
        ordered = sorted(self.recent)
        p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0
        mean = self.total_seconds / self.invocations if self.invocations else 0.0
        return {
            "invocations": self.invocations,
            "errors": self.errors,
            "mean_ms": round(mean * 1000, 3),
            "p99_ms": round(p99 * 1000, 3),
        }


class Actor:
    """Runs one version of one service class.

    ``router`` is handed to each service instance for nested invokes, and
    gives it the current connections; ``stats`` is shared with later versions
    of the same name.
    """

    def __init__(
        self,
        service: type[Service],
        *,
        router: Router,
        stats: ServiceStats,
    ) -> None:
        self.service = service
        self.name = service.name
        self.stats = stats
        self._router = router
        self._sio = SimpleIODeclaration.of(service)
        self._threaded = not service.is_async()
        self._send, self._receive = trio.open_memory_channel[Message](service.mailbox)
        #: Queue a message, waiting while the mailbox is full (the channel's own
        #: send, not a wrapper: this is every invoke's path).
        self.put = self._send.send
        self.closed = trio.Event()
        # Messages in progress, in workers or inline, never exceed concurrency.
        self._slots = trio.Semaphore(service.concurrency)

    @property
    def queued(self) -> int:
        """Messages waiting in the mailbox."""
        return self._receive.statistics().current_buffer_used

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the workers, report ready, and return once closed and drained."""
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.service.concurrency):
                    nursery.start_soon(self._work)
                task_status.started()
        finally:
            self.closed.set()

    def close(self) -> None:
        """Stop taking messages; queued ones still run, then `run` returns.

        Callers blocked on a full mailbox get ClosedResourceError and go back
        to the router, which hands them the service's new version.
        """
        self._send.close()

    def can_run_inline(self) -> bool:
        """Whether a caller may run a message in its own task right now.

        Only when nothing waits in the mailbox (no overtaking) and a slot is
        free: the caller then skips two task switches, which are most of an
        invoke's cost, and the concurrency limit holds all the same.
        """
        return self._slots.value > 0 and self.queued == 0

    async def process_inline(self, message: Message, timeout: float | None) -> bool:
        """Run ``message`` in the calling task; True if ``timeout`` ran out first.

        Call only right after `can_run_inline` said yes, with no checkpoint between.
        """
        self._slots.acquire_nowait()
        try:
            if timeout is None:
                await self._process(message)
                return False
            with trio.move_on_after(timeout) as deadline:
                await self._process(message)
            return deadline.cancelled_caught
        finally:
            self._slots.release()

    async def _work(self) -> None:
        """Process messages until the mailbox is closed and empty.

        One cancel scope serves many messages (entering one costs about 4 µs,
        most of an invoke's own overhead): abandoning a message cancels the
        scope of the worker running it, which goes on with a fresh scope.
        """
        while True:
            with trio.CancelScope() as scope:
                async for message in self._receive:
                    if not message.abandoned:
                        async with self._slots:
                            message._scope = scope
                            await self._process(message)
                            message._scope = None  # done: abandoning it must not cancel
                return

    async def _process(self, message: Message) -> None:
        """Run a fresh service instance on ``message``; one coroutine, as this is the hot path."""
        token = current_cid.set(message.cid)
        started = time.perf_counter()
        try:
            try:
                http = message.http
                fields = message.payload if http is None else http.input_fields(message.payload)
                request = Request(message.payload, self._sio.parse_input(fields), http)
                instance = self.service(
                    request=request,
                    cid=message.cid,
                    router=self._router,
                    # Read per message: a configuration reload may replace the connections.
                    resources=self._router.resources,
                )
                if self._threaded:
                    await trio.to_thread.run_sync(instance.handle, limiter=SERVICE_THREADS)
                else:
                    await instance.handle()
                self._sio.check_output(self.name, instance.response.payload)
                message.response = instance.response
            except Exception as exc:  # the error boundary: the caller receives it
                message.error = exc
        finally:
            # Also on shutdown's cancellation: the caller must never wait forever.
            # Neither response nor error tells it the work was cancelled.
            current_cid.reset(token)
            self.stats.record(time.perf_counter() - started, failed=message.response is None)
            message.done.set()
