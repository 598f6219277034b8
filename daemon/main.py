"""The daemon's main: one nursery tree, nested in shutdown order.

Entrypoints (the watcher; HTTP and the scheduler as they land) sit innermost
and stop first; then the actors drain within the grace period; then
connections close. ``main`` reports a `Daemon` handle through ``task_status``
only when every component has reported ready, which is what READY means.
Tests run this same ``main`` in-process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog
import trio

from ._config import Config
from ._deployer import Deployer
from ._router import Router
from ._zato import install_zato_alias

__all__ = ["Daemon", "main"]

log = structlog.get_logger(__name__)


@dataclass
class Daemon:
    """A running daemon, as `main` reports it: its parts, and `stop` to shut it down."""

    config: Config
    router: Router
    deployer: Deployer
    shutdown: trio.Event = field(default_factory=trio.Event)

    def stop(self) -> None:
        """Begin the graceful shutdown; `main` returns when it is done."""
        self.shutdown.set()


async def main(
    config: Config,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until ``shutdown`` is set (or `Daemon.stop` is called)."""
    started = time.perf_counter()
    install_zato_alias()
    config.paths.state.mkdir(parents=True, exist_ok=True)
    router = Router()
    async with trio.open_nursery() as actors:
        await actors.start(router.run)
        async with trio.open_nursery() as entrypoints:
            deployer = await entrypoints.start(
                Deployer(
                    config.paths.services,
                    router,
                    step=config.deploy.step,
                    force_polling=config.deploy.force_polling,
                ).run
            )
            daemon = Daemon(
                config, router, deployer, shutdown if shutdown is not None else trio.Event()
            )
            log.info(
                "daemon_ready",
                services=len(router.names()),
                startup_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            task_status.started(daemon)
            await daemon.shutdown.wait()
            log.info("daemon_stopping")
            entrypoints.cancel_scope.cancel()
        await router.close(grace=config.server.grace_period)
    log.info("daemon_stopped")
