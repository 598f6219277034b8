"""Applying a changed configuration file to the running daemon (SIGHUP, POST /admin/reload).

Channels, scheduler jobs and outgoing connections change in place: the new
file is read and validated first, and a file that fails to load changes
nothing (the error is logged and put in systemd's STATUS=). Connections are
replaced for new messages while messages in flight finish on the old ones,
which are closed after the grace period. Other sections need a restart; the
answer names them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog
import trio

from . import _systemd as systemd
from ._config import Config, load_config
from ._router import Router
from ._service import Resources
from .connections import Connections
from .emulators import EmulatorEndpoints
from .exceptions import ConfigError
from .http import ChannelGateway, RouteTable
from .scheduler import Scheduler

__all__ = ["Reloader", "close_connections", "status_line"]

log = structlog.get_logger(__name__)

#: Sections applied without a restart.
LIVE_SECTIONS = frozenset({"channels", "scheduler", "cloud", "outgoing", "source"})


class Reloader:
    """Owns the current configuration and connections, and replaces them on a reload.

    ``nursery`` hosts the deferred close of replaced connections: one that
    outlives the actors, so that messages in flight keep theirs until they
    are done. The current connections are the caller's to close at shutdown
    (`close_connections` on ``reloader.connections``, whatever it holds then).
    """

    def __init__(
        self,
        config: Config,
        *,
        router: Router,
        gateway: ChannelGateway,
        scheduler: Scheduler | None,
        connections: Connections,
        endpoints: EmulatorEndpoints,
        nursery: trio.Nursery,
    ) -> None:
        self.config = config
        self.connections = connections
        self._router = router
        self._gateway = gateway
        self._scheduler = scheduler
        self._endpoints = endpoints
        self._nursery = nursery
        self._lock = trio.Lock()

    async def reload(self) -> dict[str, Any]:
        """Re-read the configuration file and apply it; raise ConfigError if it is bad.

        Tells systemd RELOADING=1 first and READY=1 after, with a STATUS= line
        saying how it went, as ``Type=notify`` units expect: READY=1 even when
        the reload failed unexpectedly, so systemd is never left reloading.
        """
        async with self._lock:
            systemd.notify(systemd.reloading_message())
            status = "reload failed unexpectedly; see the log"
            try:
                result = await self._reload()
                status = status_line(self.config, self._router)
                return result
            except ConfigError as exc:
                log.error("config_reload_failed", error=str(exc))
                status = f"reload failed: {exc}"
                raise
            finally:
                systemd.notify(systemd.READY, systemd.status_message(status))

    async def _reload(self) -> dict[str, Any]:
        # Reading the file and building connections (secret files, perhaps
        # the Dropbox SDK's import) block: both in a thread.
        new, connections = await trio.to_thread.run_sync(self._load)
        self._apply(new, connections)
        restart_required = [
            f.name
            for f in dataclasses.fields(Config)
            if f.name not in LIVE_SECTIONS and getattr(new, f.name) != getattr(self.config, f.name)
        ]
        self.config = new
        log.info(
            "config_reloaded", channels=len(new.channels.rest), restart_required=restart_required
        )
        return {"channels": len(new.channels.rest), "restart_required": restart_required}

    def _load(self) -> tuple[Config, Connections | None]:
        """The new configuration, and new connections if their sections changed (blocking)."""
        new = load_config(self.config.source)
        if (new.cloud, new.outgoing) == (self.config.cloud, self.config.outgoing):
            return new, None
        connections = Connections(
            new, dropbox_endpoint=self._endpoints.dropbox, ftp_endpoint=self._endpoints.ftp
        )
        return new, connections

    def _apply(self, new: Config, connections: Connections | None) -> None:
        """Everything that can fail comes first, so a failure leaves the old state whole."""
        try:
            table = RouteTable(new.channels.rest)
            if self._scheduler is not None:
                self._scheduler.replace_all(new.scheduler.jobs)
        except BaseException:
            if connections is not None:
                connections.close()
            raise
        self._gateway.table = table
        if connections is not None:
            old, self.connections = self.connections, connections
            self._router.resources = Resources(
                cloud=connections.cloud, outgoing=connections.outgoing
            )
            self._nursery.start_soon(_close_later, old, new.server.grace_period)


async def close_connections(connections: Connections) -> None:
    """Close ``connections``, even when cancelled (at shutdown), within 10 s.

    Closing says goodbye to peers (FTP QUIT): blocking, so in a thread, which
    is abandoned when the 10 s are up (without that, the deadline would wait
    for the thread, i.e. for the peer's socket timeout).
    """
    with trio.CancelScope(shield=True), trio.move_on_after(10):
        await trio.to_thread.run_sync(connections.close, abandon_on_cancel=True)


async def _close_later(connections: Connections, delay: float) -> None:
    """Close replaced connections once messages that took them have had time to finish.

    At once if the daemon stops first: cancelling the wait does not skip the close.
    """
    try:
        await trio.sleep(delay)
    finally:
        await close_connections(connections)


def status_line(config: Config, router: Router) -> str:
    """What ``systemctl status`` shows while the daemon serves."""
    return (
        f"serving {len(router.names())} services, {len(config.channels.rest)} channels, "
        f"{len(config.scheduler.jobs)} jobs"
    )
