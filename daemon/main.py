"""The daemon's main: one nursery tree, nested in shutdown order.

From the outside in: emulators and connections (closed last), the actors,
the outbox, then the entrypoints — HTTP, the watcher, the scheduler — which
stop first: HTTP stops accepting and drains within the grace period, the
watcher and the scheduler are cancelled; then the outbox stops, the actors
drain, and connections close. ``main`` reports a `Daemon` handle through
``task_status``, and tells systemd READY=1, only when every component has
reported ready (services deployed, port listening). Tests run this same
``main`` in-process.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from . import _systemd as systemd
from ._config import Config
from ._deployer import Deployer
from ._durable import DurableOutbox, run_outbox
from ._reload import Reloader, close_connections, status_line
from ._router import Router
from ._service import Resources
from ._supervisor import WorkerRole
from .connections import Connections
from .emulators import run_emulators
from .http import (
    AdminContext,
    ChannelGateway,
    HotwireApp,
    Machine,
    RouteTable,
    admin_token,
    serve_http,
)
from .scheduler import Scheduler

__all__ = ["Daemon", "main"]

log = structlog.get_logger(__name__)


@dataclass
class Daemon:
    """A running daemon, as `main` reports it: its parts, `reload` and `stop`."""

    router: Router
    deployer: Deployer
    #: None in workers other than worker 0.
    scheduler: Scheduler | None
    outbox: DurableOutbox
    gateway: ChannelGateway
    reloader: Reloader
    #: Where HTTP listens, e.g. ``["http://127.0.0.1:11223"]`` (the real port when 0 was asked).
    urls: list[str]
    admin_token: str
    shutdown: trio.Event = field(default_factory=trio.Event)

    @property
    def config(self) -> Config:
        """The configuration in force: the last one a reload applied."""
        return self.reloader.config

    @property
    def url(self) -> str:
        """The first URL HTTP listens on."""
        return self.urls[0]

    async def reload(self) -> dict[str, Any]:
        """Apply the configuration file again (what SIGHUP does); ConfigError if it is bad."""
        return await self.reloader.reload()

    def stop(self) -> None:
        """Begin the graceful shutdown; `main` returns when it is done."""
        self.shutdown.set()


async def main(
    config: Config,
    *,
    shutdown: trio.Event | None = None,
    role: WorkerRole | None = None,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until ``shutdown`` is set (or `Daemon.stop` is called).

    ``role`` makes this one worker of several (see `_supervisor`): the
    emulators run in the supervisor, and only worker 0 runs scheduler jobs.
    """
    started = time.perf_counter()
    shutdown = shutdown if shutdown is not None else trio.Event()
    if role is not None and role.port is not None:
        config = config.with_server(port=role.port)
    config.paths.state.mkdir(parents=True, exist_ok=True)
    async with trio.open_nursery() as peers:
        await peers.start(systemd.Watchdog().run)
        endpoints = role.endpoints if role else await peers.start(run_emulators, config)
        routes = RouteTable(config.channels.rest)
        # Nothing from here to `try` can fail: the connections are closed in its `finally`.
        connections = Connections(
            config, dropbox_endpoint=endpoints.dropbox, ftp_endpoint=endpoints.ftp
        )
        router = Router(resources=Resources(connections.cloud, connections.outgoing))
        gateway = ChannelGateway(
            router,
            routes,
            spool_dir=config.paths.state / "http-spool",
            spool_threshold=config.server.spool_threshold,
        )
        # Jobs run once per machine: in worker 0, or here when alone. The
        # scheduler's state file has one writer, so the others have none.
        scheduler = _scheduler(config, router) if role is None or role.primary else None
        # From here on the reloader owns the connections; it closes those a
        # reload replaces in `peers`, which outlives the actors.
        reloader = Reloader(
            config,
            router=router,
            gateway=gateway,
            scheduler=scheduler,
            connections=connections,
            endpoints=endpoints,
            nursery=peers,
        )
        try:
            await _serve(
                config, reloader, router, gateway, scheduler, role, shutdown, started, task_status
            )
        finally:
            # Whatever the last reload left, not necessarily `connections`.
            await close_connections(reloader.connections)
        peers.cancel_scope.cancel()
    log.info("daemon_stopped")


async def _serve(
    config: Config,
    reloader: Reloader,
    router: Router,
    gateway: ChannelGateway,
    scheduler: Scheduler | None,
    role: WorkerRole | None,
    shutdown: trio.Event,
    started: float,
    task_status: trio.TaskStatus[Daemon],
) -> None:
    async with trio.open_nursery() as actors:
        await actors.start(router.run)
        # The outbox outlives HTTP's drain (durable requests in flight need it)
        # and stops before the actors drain; its in-flight deliveries are
        # retried after a restart.
        async with trio.open_nursery() as durable:
            outbox = await durable.start(
                functools.partial(
                    run_outbox,
                    config.outbox,
                    config.paths.state / "outbox",
                    router,
                    # Delivery, like jobs, runs once per machine: worker 0, or here when alone.
                    deliverer=role is None or role.primary,
                )
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
                if scheduler is not None:
                    await watching.start(scheduler.run)
                token = admin_token(config) or ""
                context = AdminContext(
                    router=router,
                    deployer=deployer,
                    gateway=gateway,
                    token=token,
                    reloader=reloader,
                    scheduler=scheduler,
                    outbox=outbox,
                    machine=Machine(
                        worker=role.index if role else 0,
                        router=router,
                        gateway=gateway,
                        deployer=deployer,
                        outbox=outbox.outbox,
                        token=token,
                        peers=role.peers() if role else None,
                    ),
                )
                urls = await serving.start(
                    functools.partial(
                        serve_http,
                        HotwireApp(gateway, context),
                        config.server,
                        shutdown_trigger=shutdown.wait,
                        reuse_port=role is not None,
                        private_socket=role.peer_socket(role.index)
                        if role and role.peers_dir
                        else None,
                    )
                )
                context.ready = True
                daemon = Daemon(
                    router=router,
                    deployer=deployer,
                    scheduler=scheduler,
                    outbox=outbox,
                    gateway=gateway,
                    reloader=reloader,
                    urls=urls,
                    admin_token=context.token,
                    shutdown=shutdown,
                )
                log.info(
                    "daemon_ready",
                    urls=urls,
                    services=len(router.names()),
                    startup_ms=round((time.perf_counter() - started) * 1000, 1),
                )
                systemd.notify(systemd.READY, systemd.status_message(status_line(config, router)))
                task_status.started(daemon)
                await shutdown.wait()
                context.ready = False
                systemd.notify(systemd.STOPPING, systemd.status_message("draining"))
                log.info("daemon_stopping", grace_period=config.server.grace_period)
                watching.cancel_scope.cancel()
            # Leaving `serving` waited for HTTP to drain its in-flight requests.
            durable.cancel_scope.cancel()
        await router.close(grace=config.server.grace_period)


def _scheduler(config: Config, router: Router) -> Scheduler:
    async def invoke(name: str, payload: Any, timeout: float | None) -> Any:
        return await router.invoke(name, payload, timeout=timeout)

    return Scheduler(
        config.scheduler.jobs,
        invoke=invoke,
        state_dir=config.paths.state,
        is_known_service=router.__contains__,
    )
