"""The whole machine's view for the admin API, whichever worker a request lands on.

With several workers each keeps its own counters. Every worker also listens
on a private Unix socket (``<peers>/http-<index>.sock``, in the supervisor's
private directory); a worker answering ``/admin/services``, ``/metrics`` or
``/admin/deployments`` asks the others for their figures there and adds them
up (p99 over the workers' recent latencies together), and a worker without
the scheduler forwards ``/admin/scheduler/...`` to worker 0; a reload or a
changed secret is passed on to every worker. One process
alone is its own machine. A worker that does not answer within a second is
left out and named in ``missing``.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog
import trio

from .._actor import ServiceStats
from .._deployer import Deployer
from .._router import Router
from ..outbox import OutboxStats, OutboxWriter
from ._channels import ChannelGateway

__all__ = ["FORWARDED_HEADER", "Machine", "WorkerFigures", "merge_outbox_stats", "merge_stats"]

log = structlog.get_logger(__name__)

_PEER_TIMEOUT = 1.0
#: On a request one worker passes on to the others: apply, do not pass on again.
FORWARDED_HEADER = "X-Hotwire-Forwarded"


@dataclass
class WorkerFigures:
    """One worker's counters and deployments."""

    worker: int
    pid: int
    stats: dict[str, ServiceStats]
    requests: Counter[tuple[str, int]]
    #: This process's outbox counters (what it accepted; in worker 0, delivered).
    outbox: OutboxStats
    deployments: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "pid": self.pid,
            "stats": {name: stats.to_json() for name, stats in self.stats.items()},
            "requests": [[path, status, count] for (path, status), count in self.requests.items()],
            "outbox": dataclasses.asdict(self.outbox),
            "deployments": self.deployments,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkerFigures:
        stats = {name: ServiceStats.from_json(raw) for name, raw in data["stats"].items()}
        requests = Counter({(path, status): count for path, status, count in data["requests"]})
        return cls(
            data["worker"],
            data["pid"],
            stats,
            requests,
            OutboxStats(**data["outbox"]),
            data["deployments"],
        )


def merge_stats(figures: list[WorkerFigures]) -> dict[str, ServiceStats]:
    """Every worker's counters added up per service name."""
    merged: dict[str, ServiceStats] = {}
    for worker in figures:
        for name, stats in worker.stats.items():
            merged.setdefault(name, ServiceStats()).add(stats)
    return merged


def merge_outbox_stats(figures: list[WorkerFigures]) -> OutboxStats:
    """Every worker's outbox counters added up."""
    return OutboxStats(
        **{
            f.name: sum(getattr(worker.outbox, f.name) for worker in figures)
            for f in dataclasses.fields(OutboxStats)
        }
    )


class Machine:
    """This worker plus its peers; ``peers`` maps worker index to its private socket."""

    def __init__(
        self,
        *,
        worker: int,
        router: Router,
        gateway: ChannelGateway,
        deployer: Deployer,
        outbox: OutboxWriter,
        token: str,
        peers: Mapping[int, Path] | None = None,
    ) -> None:
        self.worker = worker
        self.peers = dict(peers or {})
        self._router = router
        self._gateway = gateway
        self._deployer = deployer
        self._outbox = outbox
        self._token = token

    def local(self) -> WorkerFigures:
        return WorkerFigures(
            self.worker,
            os.getpid(),
            self._router.all_stats(),
            Counter(self._gateway.requests),
            dataclasses.replace(self._outbox.stats),
            [state.to_json() for state in self._deployer.states()],
        )

    async def figures(self) -> tuple[list[WorkerFigures], list[int]]:
        """Every worker's figures, this one's first; and the workers that did not answer.

        The peers are asked all at once, so a slow one costs its timeout once.
        """
        found = [self.local()]
        answers: dict[int, WorkerFigures | None] = {}

        async def ask(index: int) -> None:
            try:
                response = await self.request(index, "GET", "/admin/internal/figures")
                response.raise_for_status()
                answers[index] = WorkerFigures.from_json(response.json())
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                log.warning("worker_figures_missing", worker=index, error=str(exc))
                answers[index] = None

        async with trio.open_nursery() as nursery:
            for index in self.peers:
                nursery.start_soon(ask, index)
        missing = []
        for index, figures in sorted(answers.items()):
            if figures is None:
                missing.append(index)
            else:
                found.append(figures)
        return found, missing

    async def request(
        self,
        index: int,
        method: str,
        path: str,
        *,
        content: bytes = b"",
        query: str = "",
        timeout: float | None = _PEER_TIMEOUT,
        forwarded: bool = False,
    ) -> httpx.Response:
        """Send an admin request to worker ``index`` over its private socket.

        ``forwarded`` marks a change the receiver must apply but not pass on.
        """
        headers = {"Authorization": f"Bearer {self._token}"}
        if forwarded:
            headers[FORWARDED_HEADER] = "1"
        # Plain HTTP on a Unix socket: verify=False spares building an SSL
        # context (certifi's bundle, about 20 ms on the Trio thread) per call.
        transport = httpx.AsyncHTTPTransport(uds=str(self.peers[index]), verify=False)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            return await client.request(
                method,
                f"http://worker{index}{path}" + (f"?{query}" if query else ""),
                content=content,
                headers=headers,
            )

    async def broadcast(self, method: str, path: str, content: bytes) -> list[int]:
        """Apply a change made on this worker on every other one; the workers that failed."""
        failed = []
        for index in sorted(self.peers):
            try:
                answer = await self.request(
                    index, method, path, content=content, timeout=30, forwarded=True
                )
                answer.raise_for_status()
            except httpx.HTTPError as exc:
                log.error("worker_change_failed", worker=index, path=path, error=str(exc))
                failed.append(index)
        return failed
