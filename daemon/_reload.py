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

__all__ = ["Reloader"]

log = structlog.get_logger(__name__)

#: Sections applied without a restart.
LIVE_SECTIONS = frozenset({"channels", "scheduler", "cloud", "outgoing", "source"})


class Reloader:
    """Owns what a reload replaces; ``nursery`` hosts the deferred close of old connections."""

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
        saying how it went, as ``Type=notify`` units expect.
        """
        async with self._lock:
            systemd.notify(systemd.reloading_message())
            try:
                new = await trio.to_thread.run_sync(load_config, self.config.source)
                self._apply(new)
            except ConfigError as exc:
                log.error("config_reload_failed", error=str(exc))
                systemd.notify(systemd.READY, systemd.status_message(f"reload failed: {exc}"))
                raise
            restart_required = [
                f.name
                for f in dataclasses.fields(Config)
                if f.name not in LIVE_SECTIONS
                and getattr(new, f.name) != getattr(self.config, f.name)
            ]
            self.config = new
            log.info(
                "config_reloaded",
                channels=len(new.channels.rest),
                restart_required=restart_required,
            )
            systemd.notify(systemd.READY, systemd.status_message(status_line(new, self._router)))
            return {"channels": len(new.channels.rest), "restart_required": restart_required}

    def _apply(self, new: Config) -> None:
        """Everything that can fail comes first, so a failure leaves the old state whole."""
        connections = None
        if (new.cloud, new.outgoing) != (self.config.cloud, self.config.outgoing):
            connections = Connections(
                new, dropbox_endpoint=self._endpoints.dropbox, ftp_endpoint=self._endpoints.ftp
            )
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


async def _close_later(connections: Connections, delay: float) -> None:
    """Close replaced connections once messages that took them have had time to finish."""
    await trio.sleep(delay)
    await trio.to_thread.run_sync(connections.close)


def status_line(config: Config, router: Router) -> str:
    """What ``systemctl status`` shows while the daemon serves."""
    return (
        f"serving {len(router.names())} services, {len(config.channels.rest)} channels, "
        f"{len(config.scheduler.jobs)} jobs"
    )
