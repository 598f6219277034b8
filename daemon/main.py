"""The daemon's main: one nursery tree, nested in shutdown order.

Entrypoints stop first — HTTP stops accepting and drains within the grace
period, the watcher and the scheduler stop — then the actors drain, then connections close.
``main`` reports a `Daemon` handle through ``task_status`` only when every
component has reported ready (services deployed, port listening), which is
what READY means. Tests run this same ``main`` in-process.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from ._config import Config, load_config
from ._deployer import Deployer
from ._durable import DurableOutbox, run_outbox
from ._router import Router
from ._service import Resources
from ._zato import install_zato_alias
from .connections import Connections
from .emulators import run_emulators
from .http import AdminContext, ChannelGateway, HotwireApp, RouteTable, admin_token, serve_http
from .scheduler import Scheduler

__all__ = ["Daemon", "main"]

log = structlog.get_logger(__name__)


@dataclass
class Daemon:
    """A running daemon, as `main` reports it: its parts, and `stop` to shut it down."""

    config: Config
    router: Router
    deployer: Deployer
    scheduler: Scheduler
    outbox: DurableOutbox
    gateway: ChannelGateway
    #: Where HTTP listens, e.g. ``["http://127.0.0.1:11223"]`` (the real port when 0 was asked).
    urls: list[str]
    admin_token: str
    shutdown: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        """The first URL HTTP listens on."""
        return self.urls[0]

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
    shutdown = shutdown if shutdown is not None else trio.Event()
    install_zato_alias()
    config.paths.state.mkdir(parents=True, exist_ok=True)
    async with trio.open_nursery() as peers:
        endpoints = await peers.start(run_emulators, config)
        connections = Connections(
            config, dropbox_endpoint=endpoints.dropbox, ftp_endpoint=endpoints.ftp
        )
        try:
            await _serve(config, connections, shutdown, started, task_status)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                # Closing says goodbye to peers (FTP QUIT): blocking, so in a thread.
                await trio.to_thread.run_sync(connections.close)
        peers.cancel_scope.cancel()
    log.info("daemon_stopped")


async def _serve(
    config: Config,
    connections: Connections,
    shutdown: trio.Event,
    started: float,
    task_status: trio.TaskStatus[Daemon],
) -> None:
    """Actors, then entrypoints inside them, so that entrypoints stop first."""
    router = Router(resources=Resources(cloud=connections.cloud, outgoing=connections.outgoing))
    gateway = ChannelGateway(
        router,
        RouteTable(config.channels.rest),
        spool_dir=config.paths.state / "http-spool",
        spool_threshold=config.server.spool_threshold,
    )
    async with trio.open_nursery() as actors:
        await actors.start(router.run)
        # The outbox outlives HTTP's drain (durable requests in flight need it)
        # and stops before the actors drain; its in-flight deliveries are retried
        # after a restart.
        async with trio.open_nursery() as durable:
            outbox = await durable.start(
                run_outbox, config.outbox, config.paths.state / "outbox", router
            )
            router.outbox = gateway.outbox = outbox
            # Inner to outer: the watcher and the scheduler are cancelled at
            # shutdown; HTTP drains by itself.
            async with trio.open_nursery() as serving, trio.open_nursery() as watching:
                deployer = await watching.start(
                    Deployer(
                        config.paths.services,
                        router,
                        step=config.deploy.step,
                        force_polling=config.deploy.force_polling,
                    ).run
                )
                scheduler = await watching.start(
                    Scheduler(
                        config.scheduler.jobs,
                        invoke=lambda name, payload, timeout: router.invoke(
                            name, payload, timeout=timeout
                        ),
                        state_dir=config.paths.state,
                        is_known_service=router.__contains__,
                    ).run
                )
                context = AdminContext(
                    config=config,
                    router=router,
                    deployer=deployer,
                    gateway=gateway,
                    token=admin_token(config) or "",
                    reload=lambda: _reload(context),
                    connections=connections,
                    scheduler=scheduler,
                    outbox=outbox,
                )
                urls = await serving.start(
                    functools.partial(
                        serve_http,
                        HotwireApp(gateway, context),
                        config.server,
                        shutdown_trigger=shutdown.wait,
                    )
                )
                context.ready = True
                daemon = Daemon(
                    config,
                    router,
                    deployer,
                    scheduler,
                    outbox,
                    gateway,
                    urls,
                    context.token,
                    shutdown,
                )
                log.info(
                    "daemon_ready",
                    urls=urls,
                    services=len(router.names()),
                    startup_ms=round((time.perf_counter() - started) * 1000, 1),
                )
                task_status.started(daemon)
                await shutdown.wait()
                context.ready = False
                log.info("daemon_stopping", grace_period=config.server.grace_period)
                watching.cancel_scope.cancel()
            # Leaving `serving` waits for HTTP to drain its in-flight requests.
            durable.cancel_scope.cancel()
        await router.close(grace=config.server.grace_period)


async def _reload(context: AdminContext) -> dict[str, Any]:
    """Re-read the configuration file, apply channels and jobs; report what needs a restart."""
    new = await trio.to_thread.run_sync(load_config, context.config.source)
    context.gateway.table = RouteTable(new.channels.rest)
    context.scheduler.replace_all(new.scheduler.jobs)
    restart_required = [
        f.name
        for f in dataclasses.fields(Config)
        if f.name not in ("channels", "scheduler", "source")
        and getattr(new, f.name) != getattr(context.config, f.name)
    ]
    context.config = new
    log.info("config_reloaded", channels=len(new.channels.rest), restart_required=restart_required)
    return {"channels": len(new.channels.rest), "restart_required": restart_required}
