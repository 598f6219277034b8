"""Several worker processes on one port, under one supervisor: every core in use.

One Trio process uses one core. With ``[server] workers = N`` (N > 1),
``hotwire run`` becomes a supervisor: it runs the once-per-machine roles that
need no services (the emulators), starts N workers — each a full daemon with
its own SO_REUSEPORT socket on the same port, so the kernel spreads
connections over them — and is the process systemd talks to:

- READY=1 once every worker reported READY=1 (each worker's sd_notify goes to
  a private socket of the supervisor);
- WATCHDOG=1 only while every worker is alive and ready;
- SIGHUP is forwarded to every worker (RELOADING=1, then READY=1 when all
  are ready again); SIGTERM or SIGINT: STOPPING=1, forwarded, exit 0 when all
  workers have drained;
- a worker that dies is started again, after 1 s doubling to 30 s while it
  keeps dying young.

Worker 0 also runs the roles that must exist once per machine but need the
services: scheduler jobs (and so FTP polling) and outbox delivery. Each
worker's stdin is a pipe the supervisor holds open and never writes: when the
supervisor dies, even by SIGKILL, the workers read end-of-file and stop, so
no orphan keeps the port. (PR_SET_PDEATHSIG would not do: it fires when the
*thread* that started the child exits, and Trio starts processes from
worker threads that come and go.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from . import _systemd as systemd
from ._config import Config
from .emulators import EmulatorEndpoints, run_emulators
from .http import admin_token, reuse_port_socket

__all__ = ["Supervisor", "WorkerRole", "stop_when_orphaned"]

log = structlog.get_logger(__name__)

#: The supervisor hands the emulators' endpoints to its workers in this variable.
ENDPOINTS_VARIABLE = "HOTWIRE_EMULATOR_ENDPOINTS"
#: ... and the directory of the workers' private admin sockets in this one.
PEERS_VARIABLE = "HOTWIRE_PEERS_DIR"
#: ... and the port, when the configuration asks for any free one (port 0).
PORT_VARIABLE = "HOTWIRE_PORT"
_RESTART_DELAY = (1.0, 30.0)  # first and longest wait before restarting a dead worker
_LIVED_LONG = 60.0  # a worker up this long has its restart delay reset
_RELOAD_TIMEOUT = 30.0  # a reload not confirmed by every worker by then is reported


@dataclass(frozen=True)
class WorkerRole:
    """What a worker process is: its index, the count, and the emulators to use."""

    index: int
    count: int
    endpoints: EmulatorEndpoints
    #: Where each worker's private admin socket is: ``http-<index>.sock``.
    peers_dir: Path | None = None
    #: The port the supervisor chose when the configuration says 0.
    port: int | None = None

    def peer_socket(self, index: int) -> Path:
        assert self.peers_dir is not None
        return self.peers_dir / f"http-{index}.sock"

    def peers(self) -> dict[int, Path]:
        """The other workers' private admin sockets, by index."""
        if self.peers_dir is None:
            return {}
        return {i: self.peer_socket(i) for i in range(self.count) if i != self.index}

    @property
    def primary(self) -> bool:
        """Worker 0 runs the once-per-machine roles: scheduler and outbox delivery."""
        return self.index == 0

    @classmethod
    def from_environment(cls, index: int, count: int) -> WorkerRole:
        peers_dir = os.environ.get(PEERS_VARIABLE)
        port = os.environ.get(PORT_VARIABLE)
        return cls(
            index,
            count,
            EmulatorEndpoints.from_json(os.environ.get(ENDPOINTS_VARIABLE, "{}")),
            Path(peers_dir) if peers_dir else None,
            int(port) if port else None,
        )


class _Worker:
    """One worker's process and what it last told us through its notify socket."""

    def __init__(self, index: int, notify_path: Path) -> None:
        self.index = index
        self.notify_path = notify_path
        self.process: trio.Process | None = None
        self.ready = trio.Event()
        self.status = ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def expect_ready(self) -> None:
        """Wait for a new READY=1 from now on (after a death or a reload).

        Only an event that has fired is replaced: a task may already be
        waiting on one that has not, and must be woken by the next READY=1.
        """
        if self.ready.is_set():
            self.ready = trio.Event()

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signum)


class Supervisor:
    """Runs ``count`` workers of the daemon configured by ``config`` (read from its file)."""

    def __init__(self, config: Config, count: int) -> None:
        self._config = config
        self._count = count
        self._stopping = False
        self._workers: list[_Worker] = []

    async def run(self) -> None:
        """Supervise until SIGTERM or SIGINT and every worker has exited."""
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        with (
            trio.open_signal_receiver(*signals) as received,
            tempfile.TemporaryDirectory(prefix="hotwire-") as sockets,
            _reserved_port(self._config) as port,
        ):
            async with trio.open_nursery() as nursery:
                # Once-per-machine things that need no services: made here, once.
                await trio.to_thread.run_sync(admin_token, self._config)
                endpoints = await nursery.start(run_emulators, self._config)
                environment = {
                    **os.environ,
                    ENDPOINTS_VARIABLE: endpoints.to_json(),
                    PEERS_VARIABLE: sockets,
                }
                if port is not None:
                    environment[PORT_VARIABLE] = str(port)
                for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS"):
                    environment.pop(name, None)  # systemd talks to the supervisor only
                for index in range(self._count):
                    worker = _Worker(index, Path(sockets) / f"notify-{index}.sock")
                    self._workers.append(worker)
                    await nursery.start(self._listen, worker)
                    nursery.start_soon(self._keep_running, worker, environment)
                # Signals are obeyed from now on, not only once ready: a SIGTERM
                # must stop workers that keep dying before their first READY=1.
                nursery.start_soon(self._announce_ready, nursery)
                await self._handle_signals(received, nursery)
                nursery.cancel_scope.cancel()
        log.info("supervisor_stopped")

    async def _announce_ready(self, nursery: trio.Nursery) -> None:
        """READY=1, and the watchdog, once every worker has reported READY=1."""
        for worker in self._workers:
            await worker.ready.wait()
        if self._stopping:
            return  # a worker that came up while the others drain changes nothing
        await nursery.start(systemd.Watchdog(is_healthy=self._healthy).run)
        systemd.notify(systemd.READY, systemd.status_message(self._status()))
        log.info("supervisor_ready", workers=self._count)

    async def _handle_signals(self, received: Any, nursery: trio.Nursery) -> None:
        async for signum in received:
            log.info("signal_received", signal=signal.Signals(signum).name)
            if signum == signal.SIGHUP:
                # In the background: a SIGTERM must be obeyed even mid-reload.
                nursery.start_soon(self._reload_all)
                continue
            self._stopping = True
            systemd.notify(systemd.STOPPING, systemd.status_message("draining"))
            for worker in self._workers:
                worker.signal(signal.SIGTERM)
            for worker in self._workers:
                if worker.process is not None:
                    await worker.process.wait()
            return

    async def _reload_all(self) -> None:
        """Forward SIGHUP; READY=1 once every worker has reported ready again."""
        systemd.notify(systemd.reloading_message())
        for worker in self._workers:
            worker.expect_ready()
            worker.signal(signal.SIGHUP)
        with trio.move_on_after(_RELOAD_TIMEOUT) as waiting:
            for worker in self._workers:
                await worker.ready.wait()
        if waiting.cancelled_caught:
            log.error("workers_not_ready_after_reload", timeout=_RELOAD_TIMEOUT)
        systemd.notify(systemd.READY, systemd.status_message(self._status()))

    async def _keep_running(self, worker: _Worker, environment: dict[str, str]) -> None:
        delay = _RESTART_DELAY[0]
        command = [
            sys.executable, "-m", "daemon", "worker", "--config", str(self._config.source),
            "--index", str(worker.index), "--workers", str(self._count),
        ]  # fmt: skip
        while not self._stopping:
            env = {**environment, "NOTIFY_SOCKET": str(worker.notify_path)}
            worker.process = await trio.lowlevel.open_process(
                command, env=env, stdin=subprocess.PIPE
            )
            started = trio.current_time()
            log.info("worker_started", worker=worker.index, pid=worker.process.pid)
            code = await worker.process.wait()
            assert worker.process.stdin is not None
            await worker.process.stdin.aclose()
            if self._stopping:
                log.info("worker_stopped", worker=worker.index, code=code)
                return
            worker.expect_ready()
            if trio.current_time() - started > _LIVED_LONG:
                delay = _RESTART_DELAY[0]
            log.error("worker_died", worker=worker.index, code=code, restart_in=delay)
            await trio.sleep(delay)
            delay = min(delay * 2, _RESTART_DELAY[1])

    async def _listen(
        self, worker: _Worker, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Receive the worker's sd_notify datagrams."""
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            await sock.bind(str(worker.notify_path))
            task_status.started()
            while True:
                message = (await sock.recv(4096)).decode("utf-8", "replace")
                fields = dict(line.partition("=")[::2] for line in message.splitlines())
                worker.status = fields.get("STATUS", worker.status)
                if fields.get("READY") == "1":
                    worker.ready.set()

    def _healthy(self) -> bool:
        return all(worker.alive and worker.ready.is_set() for worker in self._workers)

    def _status(self) -> str:
        return f"{self._count} workers; worker 0: {self._workers[0].status}"


@contextlib.contextmanager
def _reserved_port(config: Config) -> Iterator[int | None]:
    """For ``port = 0``: a free port, held by a bound socket that never listens.

    Every worker must bind the same port; the held socket (SO_REUSEPORT, like
    theirs) keeps another program from taking it meanwhile.
    """
    if config.server.port != 0:
        yield None
        return
    with reuse_port_socket(config.server.host, 0) as holder:
        yield int(holder.getsockname()[1])


async def stop_when_orphaned(stop: Callable[[], None]) -> None:
    """In a worker: call ``stop`` once the supervisor is gone (stdin reaches end-of-file)."""
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as lifeline:
        while await lifeline.receive_some():
            pass
    log.warning("supervisor_gone")
    stop()
