"""`hotwire run` under systemd's protocols: notify, watchdog, reload, stop, socket activation."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from notify_support import Notifications, notification_socket
from support import HOTWIRE, JsonLines, free_port

SERVICE = """
from daemon import Service

class Hello(Service):
    name = "hello"
    async def handle(self):
        self.response.payload = {"hello": self.request.http.path}
"""


def write_config(root: Path, port: int, channels: list[str], workers: int = 1) -> Path:
    (root / "services").mkdir(exist_ok=True)
    (root / "services" / "hello.py").write_text(SERVICE)
    text = (
        f"[server]\nport = {port}\nworkers = {workers}\n"
        '[paths]\nservices = "services"\nstate = "state"\n'
        '[admin]\ntoken = "t"\n'
    )
    for path in channels:
        text += f'[[channels.rest]]\npath = "{path}"\nservice = "hello"\nmethods = ["GET"]\n'
    config = root / "hotwire.toml"
    config.write_text(text)
    return config


@pytest.fixture
async def notifications(tmp_path: Path) -> AsyncIterator[Notifications]:
    async with notification_socket(tmp_path / "notify.sock") as notifications:
        yield notifications


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "supervisor-and-2-workers"])
async def test_notify_watchdog_reload_and_stop(
    tmp_path: Path, notifications: Notifications, workers: int
) -> None:
    """READY=1, pings at half WATCHDOG_USEC, RELOADING=1 + READY=1 on SIGHUP, STOPPING=1, exit 0."""
    port = free_port()
    config = write_config(tmp_path, port, ["/api/a"], workers)
    status = "READY=1\nSTATUS=" + ("" if workers == 1 else "2 workers; worker 0: ")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    with (tmp_path / "daemon.log").open("wb") as log:
        process = await trio.lowlevel.open_process(
            [*HOTWIRE, "run", "--config", str(config)], env=env, stdout=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with trio.fail_after(30):
            ready = await notifications.next()
            assert ready.startswith(status + "serving 1 services, 1 channels")
            pings = []
            while len(pings) < 4:
                if await notifications.next(skip_watchdog=False) == "WATCHDOG=1":
                    pings.append(notifications.seen[-1][0])
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert all(0.1 < gap < 0.6 for gap in gaps), gaps

            write_config(tmp_path, port, ["/api/a", "/api/b"], workers)
            process.send_signal(signal.SIGHUP)
            reloading = await notifications.next()
            assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
            assert (await notifications.next()).startswith(
                status + "serving 1 services, 2 channels"
            )
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/api/b")).json() == {"hello": "/api/b"}

                config.write_text(config.read_text() + "\n[server]\nport = 'broken'\n")
                process.send_signal(signal.SIGHUP)
                assert (await notifications.next()).startswith("RELOADING=1")
                failed = await notifications.next()
                assert failed.startswith(status + "reload failed:")
                assert "hotwire.toml" in failed
                assert (await client.get("/api/b")).status_code == 200

            process.send_signal(signal.SIGTERM)
            assert (await notifications.next()).startswith("STOPPING=1")
            assert await process.wait() == 0
    finally:
        if process.returncode is None:  # a failed test leaves no daemon behind
            process.kill()
            await process.wait()
    assert "config_reload_failed" in (tmp_path / "daemon.log").read_text()


# Worker 0 (the one the supervisor waits on first) dies deploying it, before READY=1, once.
DIES_ONCE = """
import os
import sys

def first_time():
    try:
        os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True

if sys.argv[sys.argv.index("--index") + 1] == "0" and first_time():
    os._exit(3)
"""


async def test_supervisor_ready_after_a_worker_died_before_ready(
    tmp_path: Path, notifications: Notifications
) -> None:
    """A worker dying before its first READY=1 is started again; then the supervisor is ready."""
    config = write_config(tmp_path, free_port(), ["/api/a"], workers=2)
    marker = tmp_path / "died"
    (tmp_path / "services" / "dies.py").write_text(DIES_ONCE.replace("MARKER", repr(str(marker))))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    with (tmp_path / "daemon.log").open("wb") as log:
        process = await trio.lowlevel.open_process(
            [*HOTWIRE, "run", "--config", str(config)], env=env, stdout=log
        )
    try:
        with trio.fail_after(20):
            assert (await notifications.next()).startswith("READY=1\nSTATUS=2 workers")
        assert marker.exists()
        assert "worker_died" in (tmp_path / "daemon.log").read_text()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigterm_stops_workers_that_never_get_ready(
    tmp_path: Path, notifications: Notifications
) -> None:
    """Workers dying at every start: SIGTERM still gives STOPPING=1 and exit 0, no READY=1."""
    config = write_config(tmp_path, free_port(), ["/api/a"], workers=2)
    (tmp_path / "services" / "dies.py").write_text("import os\nos._exit(3)\n")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    process = await trio.lowlevel.open_process(
        [*HOTWIRE, "run", "--config", str(config)], env=env, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(20):
            await JsonLines(process.stdout).until("worker_died")
            process.send_signal(signal.SIGTERM)
            assert (await notifications.next()).startswith("STOPPING=1")
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None, reason="no systemd-socket-activate"
)
async def test_socket_activation_answers_an_early_request(tmp_path: Path) -> None:
    """Under systemd-socket-activate, a request sent before the daemon is ready is answered."""
    port = free_port()
    config = write_config(tmp_path, port, ["/api/a"])
    with (tmp_path / "daemon.log").open("wb") as log:
        process = await trio.lowlevel.open_process(
            [
                "systemd-socket-activate",
                "-l",
                f"127.0.0.1:{port}",
                *HOTWIRE,
                "run",
                "--config",
                str(config),
            ],
            stdout=log,
            stderr=subprocess.PIPE,
        )
    assert process.stderr is not None
    async with process.stderr, trio.open_nursery() as nursery:
        try:
            with trio.fail_after(30):
                await _until_listening(process.stderr)
                # Read to the end, so that no write to stderr blocks on a full pipe.
                nursery.start_soon(_discard, process.stderr)
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    # The first connection is what starts the daemon: it cannot be ready yet.
                    await stream.send_all(
                        b"GET /api/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    )
                    answer = b""
                    while chunk := await stream.receive_some():
                        answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            assert answer.endswith(b'{"hello": "/api/a"}')
        finally:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await process.wait()
            nursery.cancel_scope.cancel()


async def _until_listening(stderr: trio.abc.ReceiveStream) -> None:
    """Return once systemd-socket-activate says "Listening on ..." (its socket is bound)."""
    said = b""
    while b"Listening on" not in said:
        chunk = await stderr.receive_some()
        assert chunk, f"systemd-socket-activate ended without listening: {said!r}"
        said += chunk


async def _discard(stream: trio.abc.ReceiveStream) -> None:
    async for _ in stream:
        pass
