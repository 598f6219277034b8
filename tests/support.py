"""Small helpers for tests that drive a running daemon."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from daemon import Daemon, FileState

#: The repository's own services (the reference scenario's), as deployed by `make run`.
REPO_SERVICES = Path(__file__).parent.parent / "services"

#: The ``hotwire`` command, run from this checkout with this interpreter.
HOTWIRE = [sys.executable, "-m", "daemon"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a process that binds it itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def copy_repo_services(root: Path) -> Path:
    """``root / "services"`` holding a copy of the repository's services (made once)."""
    services = root / "services"
    if not services.exists():
        shutil.copytree(REPO_SERVICES, services, ignore=shutil.ignore_patterns("__pycache__"))
    return services


async def open_stream(url: str) -> trio.SocketStream:
    """A raw TCP connection to the host and port of ``url`` (``http://host:port``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def until(daemon: Daemon, condition: Callable[[], object], *, timeout: float = 10) -> None:
    """Wait, rescan by rescan, until ``condition()`` is true; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not condition():
            await daemon.deployer.wait_rescanned()


def file_state(daemon: Daemon, file_name: str) -> FileState | None:
    """The deployer's current record of ``file_name``; a new object after each deploy attempt."""
    return next((s for s in daemon.deployer.states() if s.path.name == file_name), None)


class JsonLines:
    """Reads a subprocess's JSON log lines as they come, up to a given event."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self.seen: list[dict[str, Any]] = []

    async def until(self, event: str) -> dict[str, Any]:
        """The first line (not seen before) whose ``event`` is ``event``; fails at EOF."""
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                if line.strip():
                    self.seen.append(json.loads(line))
                    if self.seen[-1].get("event") == event:
                        return self.seen[-1]
            chunk = await self._stream.receive_some()
            if not chunk:
                raise AssertionError(f"the process ended before logging {event!r}: {self.seen}")
            self._buffer += chunk

    async def rest(self) -> list[dict[str, Any]]:
        """Every remaining line, to EOF."""
        while chunk := await self._stream.receive_some():
            self._buffer += chunk
        self.seen += [json.loads(line) for line in self._buffer.splitlines() if line.strip()]
        self._buffer = b""
        return self.seen


def _can_create_in(directory: Path) -> bool:
    probe = directory / ".probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse new files, for a normal user and for root.

    chmod 0o500 stops a normal user. Root ignores permission bits, so when the
    directory is still writable it is also made immutable with ``chattr +i``
    (needs CAP_LINUX_IMMUTABLE and ext4/xfs/btrfs; the test is skipped without).
    """
    directory.chmod(0o500)
    immutable = False
    try:
        if _can_create_in(directory):
            with contextlib.suppress(OSError):
                done = subprocess.run(["chattr", "+i", directory], capture_output=True, check=False)
                immutable = done.returncode == 0
            if _can_create_in(directory):
                pytest.skip("cannot make a directory unwritable here (root without chattr +i)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", directory], capture_output=True, check=True)
        directory.chmod(0o700)
