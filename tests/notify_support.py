"""systemd's side of sd_notify for tests: a datagram socket that records what arrives."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio


class Notifications:
    """The datagrams sent to one notify socket, as they arrive, with when they came."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        self.seen: list[tuple[float, str]] = []

    async def next(self, *, skip_watchdog: bool = True) -> str:
        while True:
            data = await self._sock.recv(4096)
            self.seen.append((trio.current_time(), data.decode()))
            if not (skip_watchdog and data == b"WATCHDOG=1"):
                return data.decode()


@asynccontextmanager
async def notification_socket(path: Path) -> AsyncIterator[Notifications]:
    """Listen on ``path``, the value to give ``$NOTIFY_SOCKET``."""
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(str(path))
        yield Notifications(sock)
