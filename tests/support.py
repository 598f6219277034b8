"""Small helpers for tests that drive a running daemon."""

from __future__ import annotations

from collections.abc import Callable

import trio

from daemon import Daemon, FileState


async def until(daemon: Daemon, condition: Callable[[], object], *, timeout: float = 10) -> None:
    """Wait, rescan by rescan, until ``condition()`` is true; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not condition():
            await daemon.deployer.wait_rescanned()


def file_state(daemon: Daemon, file_name: str) -> FileState | None:
    """The deployer's current record of ``file_name``; a new object after each deploy attempt."""
    return next((s for s in daemon.deployer.states() if s.path.name == file_name), None)
