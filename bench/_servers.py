"""Server subprocesses for the benchmarks: start on a free port, wait until ready, stop.

Ports are picked before the server binds them, so one taken in between by
another process (other benchmarks, tests) means a retry on another port.
`scratch_dir` gives each benchmark a directory removed however it ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "HOTWIRE",
    "PINNABLE",
    "READY_TIMEOUT",
    "REPO",
    "Server",
    "free_port",
    "pinned",
    "scratch_dir",
    "serving",
    "started",
    "stop",
]

READY_TIMEOUT = 30.0
REPO = Path(__file__).resolve().parent.parent
HOTWIRE = Path(sys.executable).parent / "hotwire"
#: With two cores or more, servers go on core 0 and load generators on core 1.
PINNABLE = (os.cpu_count() or 1) >= 2


def pinned(core: int | None, command: list[str]) -> list[str]:
    """``command`` run on ``core`` (taskset) when the machine has cores to spare."""
    return ["taskset", "-c", str(core), *command] if core is not None and PINNABLE else command


@dataclass
class Server:
    """A server subprocess: its process, base URL and log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def memory_mb(self, field: str = "VmHWM") -> float:
        """``VmHWM`` (peak RSS since start) or ``VmRSS`` from /proc, in MB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
        if match is None:  # a zombie has no memory figures
            raise RuntimeError(f"the server has exited:\n{self.log.read_text()[-2000:]}")
        return int(match.group(1)) * 1024 / 1e6


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200  # type: ignore[no-any-return]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _start(
    command: list[str],
    url: str,
    ready_path: str,
    log: Path,
    cwd: Path,
    pass_fds: tuple[int, ...] = (),
) -> Server | None:
    """Start ``command``; None if it exits because its port was taken meanwhile."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, pass_fds=pass_fds
        )
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while not _answers(url + ready_path):
            if process.poll() is not None and "Address already in use" in log.read_text():
                return None
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not become ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)  # a benchmark may poll: the daemon logs at "warning" only
    except BaseException:
        stop(process)
        raise
    return Server(process, url, log)


@contextlib.contextmanager
def serving(
    command_for: Callable[[int], list[str]],
    ready_path: str,
    log: Path,
    *,
    cwd: Path = REPO,
    core: int | None = None,
) -> Iterator[Server]:
    """Start ``command_for(port)`` on a free port, wait for ``GET ready_path`` to answer 200.

    ``core`` pins the server to one core (see `pinned`). The server gets
    SIGTERM afterwards.
    """
    for _ in range(5):
        port = free_port()
        command = pinned(core, command_for(port))
        server = _start(command, f"http://127.0.0.1:{port}", ready_path, log, cwd)
        if server is not None:
            break
    else:
        raise RuntimeError(f"no free port found for {command_for(0)}")
    try:
        yield server
    finally:
        stop(server.process)


@contextlib.contextmanager
def started(
    command: list[str], url: str, ready_path: str, log: Path, *, pass_fds: tuple[int, ...]
) -> Iterator[Server]:
    """Start ``command`` serving on sockets the caller bound (``pass_fds``); as `serving`."""
    server = _start(command, url, ready_path, log, REPO, pass_fds)
    if server is None:
        raise RuntimeError(f"{command} found its address in use:\n{log.read_text()[-2000:]}")
    try:
        yield server
    finally:
        stop(server.process)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed even when the benchmark is stopped by SIGTERM.

    SIGTERM (a CI timeout) becomes SystemExit while inside, so it unwinds like
    an error: servers get stopped and large files removed.
    """
    previous = signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as directory:
            yield Path(directory)
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
