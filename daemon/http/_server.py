"""The HTTP entrypoint: hypercorn's trio worker serving channels, admin and metrics.

One ASGI app on one port, on the fast transport unless ``server.fast_transport``
is off: ``/admin/...`` and ``/metrics`` go to the
quart-trio admin app (which also handles the lifespan protocol); every other
path goes to the REST channel gateway. Graceful shutdown is hypercorn's own:
when ``shutdown_trigger`` returns it stops accepting, lets in-flight
requests finish within ``server.grace_period``, then cancels the rest.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import hypercorn.config
import trio
from hypercorn.config import Sockets

from .._config import ServerConfig
from .._systemd import listen_fds
from ._admin import AdminContext, create_admin_app
from ._channels import ChannelGateway
from ._fast_transport import select_serve

__all__ = ["HotwireApp", "reuse_port_socket", "serve_http"]


class HotwireApp:
    """The root ASGI app: admin and metrics to Quart, everything else to the channels."""

    def __init__(self, gateway: ChannelGateway, context: AdminContext) -> None:
        self._gateway = gateway
        self._admin = create_admin_app(context)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(("/admin", "/metrics")):
            await self._gateway(scope, receive, send)
        else:
            await self._admin(scope, receive, send)  # type: ignore[arg-type]


def hypercorn_config(server: ServerConfig) -> hypercorn.config.Config:
    """hypercorn's settings from ``[server]``; under socket activation, systemd's sockets."""
    config = hypercorn.config.Config()
    activated = listen_fds()
    # detach(): hypercorn's fd:// bind makes its own socket object, which must own the fd.
    config.bind = [f"fd://{s.detach()}" for s in activated] or [f"{server.host}:{server.port}"]
    config.graceful_timeout = server.grace_period
    config.keep_alive_timeout = server.keep_alive_timeout
    config.accesslog = None
    # hypercorn's own handler would bypass our log format: hand it our logger.
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve_http(
    app: HotwireApp,
    server: ServerConfig,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    reuse_port: bool = False,
    private_socket: Path | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns and in-flight requests drain.

    ``reuse_port`` binds with SO_REUSEPORT, for several workers on one port;
    ``private_socket`` also serves on that Unix socket, where peers ask.
    ``nursery.start`` returns the URLs listened on (the real port when 0 was asked).
    """
    config = hypercorn_config(server)
    sockets = None
    if reuse_port:
        shared = reuse_port_socket(server.host, server.port)
        shared.listen(hypercorn.config.Config.backlog)
        listening = [shared]
        if private_socket is not None:
            listening.append(_unix_socket(private_socket))
        sockets = Sockets(secure_sockets=[], insecure_sockets=listening, quic_sockets=[])
    await select_serve(server.fast_transport)(
        app,
        config,
        sockets=sockets,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )


def _unix_socket(path: Path) -> socket.socket:
    """A listening Unix socket only this user can reach (the directory is private)."""
    path.unlink(missing_ok=True)  # left by a worker that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(hypercorn.config.Config.backlog)
    return sock


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket other processes may bind too; the kernel spreads connections.

    With SO_REUSEPORT every worker binds the same port; the supervisor holds
    one that never listens, to keep the port while port 0 was asked.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock
