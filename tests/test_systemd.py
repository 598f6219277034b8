"""Tests for daemon._systemd and the unit files in systemd/.

sd_notify is checked against a real Unix datagram socket standing in for
systemd; socket activation runs in child processes, because descriptor 3 of
the test process is not ours to take.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import trio

from daemon._systemd import (
    READY,
    STOPPING,
    WATCHDOG,
    Watchdog,
    listen_fds,
    notify,
    reloading_message,
    status_message,
)
from daemon.exceptions import ConfigError

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"


def _drain(sock: socket.socket) -> list[bytes]:
    """Return every datagram already queued on ``sock``."""
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(4096, socket.MSG_DONTWAIT))
        except BlockingIOError:
            return datagrams


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket in tmp_path playing systemd, named by $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


class TestNotify:
    def test_sends_each_message_as_one_datagram(self, notify_socket: socket.socket) -> None:
        """Every call is one datagram whose lines are joined by newlines."""
        assert notify(READY, status_message("serving on 127.0.0.1:11223"))
        assert notify(STOPPING)
        assert _drain(notify_socket) == [
            b"READY=1\nSTATUS=serving on 127.0.0.1:11223",
            b"STOPPING=1",
        ]

    def test_abstract_namespace(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A leading '@' in $NOTIFY_SOCKET names an abstract socket."""
        name = f"hotwire-test-{uuid.uuid4().hex}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("\0" + name)
            monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
            assert notify(WATCHDOG)
            assert _drain(sock) == [b"WATCHDOG=1"]

    def test_follows_a_changed_notify_socket(
        self, notify_socket: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A new $NOTIFY_SOCKET value is used from the next call on."""
        assert notify(READY)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:
            other.bind(str(tmp_path / "other"))
            monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "other"))
            assert notify(STOPPING)
            assert _drain(other) == [b"STOPPING=1"]
        assert _drain(notify_socket) == [b"READY=1"]

    def test_unset_is_a_no_op(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Outside systemd nothing is sent and notify says so."""
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
        assert notify(READY) is False

    def test_relative_address_is_ignored(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Only absolute paths and '@' names are sd_notify addresses."""
        monkeypatch.setenv("NOTIFY_SOCKET", "relative/notify")
        with structlog.testing.capture_logs() as logs:
            assert notify(READY) is False
        assert [entry["event"] for entry in logs] == ["sd_notify_unsupported_address"]

    def test_send_failure_returns_false_and_logs_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A socket nobody listens on fails quietly: False, and one log line."""
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
        with structlog.testing.capture_logs() as logs:
            assert notify(READY) is False
            assert notify(WATCHDOG) is False
        assert [entry["event"] for entry in logs] == ["sd_notify_failed"]
        assert logs[0]["socket"] == str(tmp_path / "nobody-listens")

    def test_full_queue_fails_at_once(self, notify_socket: socket.socket) -> None:
        """When systemd does not read, sending fails instead of blocking the Trio thread."""
        results: list[bool] = []

        def flood() -> None:
            results.extend(notify(WATCHDOG) for _ in range(1000))

        with structlog.testing.capture_logs() as logs:
            sender = threading.Thread(target=flood, daemon=True)
            sender.start()
            sender.join(timeout=10)
            assert not sender.is_alive(), "notify blocked on a full socket"
            assert results[0] and not results[-1]
            assert _drain(notify_socket)
            assert notify(READY), "sending works again once systemd has read"
        assert [entry["event"] for entry in logs] == ["sd_notify_failed"]

    def test_status_is_one_line(self) -> None:
        """A newline in a status text cannot start another assignment."""
        assert status_message("draining\nREADY=1") == "STATUS=draining READY=1"

    def test_reloading_carries_the_monotonic_clock(self) -> None:
        """MONOTONIC_USEC is CLOCK_MONOTONIC in microseconds at the time of the call."""
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        message = reloading_message()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        match = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)", message)
        assert match is not None
        assert before <= int(match[1]) <= after


async def _record_pings(sock: socket.socket, times: list[float]) -> None:
    """Append the Trio clock's time of every WATCHDOG=1 datagram to ``times``."""
    trio_sock = trio.socket.from_stdlib_socket(sock)
    while True:
        assert await trio_sock.recv(4096) == b"WATCHDOG=1"
        times.append(trio.current_time())


class TestWatchdog:
    async def test_pings_at_half_the_timeout(
        self,
        notify_socket: socket.socket,
        monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.abc.Clock,
    ) -> None:
        """With WatchdogSec=10 it pings at once, then every 5 s of (virtual) time."""
        monkeypatch.setenv("WATCHDOG_USEC", "10000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        times: list[float] = []
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_record_pings, notify_socket, times)
            assert await nursery.start(Watchdog().run) == 5.0
            await trio.sleep(22)
            nursery.cancel_scope.cancel()
        assert [round(t - start, 3) for t in times] == [0, 5, 10, 15, 20]

    async def test_pings_only_while_healthy(
        self,
        notify_socket: socket.socket,
        monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.abc.Clock,
    ) -> None:
        """Pings stop while is_healthy is False and resume when it is True again."""
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")
        start = trio.current_time()
        times: list[float] = []

        def is_healthy() -> bool:
            return not 2.5 < trio.current_time() - start < 6.5

        with structlog.testing.capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_record_pings, notify_socket, times)
                await nursery.start(Watchdog(is_healthy).run)
                await trio.sleep(9.5)
                nursery.cancel_scope.cancel()
        assert [round(t - start, 3) for t in times] == [0, 1, 2, 7, 8, 9]
        events = [entry["event"] for entry in logs]
        assert events == ["watchdog_started", "watchdog_withheld", "watchdog_resumed"]

    async def test_never_healthy_sends_nothing(
        self,
        notify_socket: socket.socket,
        monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.abc.Clock,
    ) -> None:
        """A daemon that is never healthy never pings, so systemd will restart it."""
        monkeypatch.setenv("WATCHDOG_USEC", "1000000")
        with trio.move_on_after(10):
            await Watchdog(lambda: False).run()
        assert _drain(notify_socket) == []

    @pytest.mark.parametrize(
        "environ",
        [{}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}],
        ids=["unset", "zero", "other-pid"],
    )
    async def test_returns_at_once_when_systemd_expects_no_pings(
        self, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]
    ) -> None:
        """Without a watchdog for this process, run reports None and returns."""
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        with trio.fail_after(1):
            async with trio.open_nursery() as nursery:
                assert await nursery.start(Watchdog().run) is None
        assert _drain(notify_socket) == []

    async def test_malformed_timeout_is_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A WATCHDOG_USEC that is not a number is named in the error."""
        monkeypatch.setenv("WATCHDOG_USEC", "30s")
        with pytest.raises(ConfigError, match=r"WATCHDOG_USEC='30s'"):
            await Watchdog().run()


# Run in a child process: "by-hand" puts a listening socket on fd 3 and sets the
# variables the way systemd does, then prints what listen_fds() found; "real"
# (under systemd-socket-activate) sends that report to the first connection on
# the socket it was given, which proves the socket listens.
_CHILD = """
import json, os, socket, sys
from daemon._systemd import listen_fds
if sys.argv[1] == "by-hand":
    fd = socket.create_server(("127.0.0.1", 0)).detach()
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.set_inheritable(3, True)  # as it is after systemd's exec
    os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="http")
sockets = listen_fds()
report = {
    "sockets": [[s.fileno(), s.family.name, s.type.name] for s in sockets],
    "inheritable": [s.get_inheritable() for s in sockets],
    "environ": sorted(k for k in os.environ if k.startswith("LISTEN_")),
}
if sys.argv[1] == "by-hand":
    print(json.dumps(report))
else:
    connection, _ = sockets[0].accept()
    connection.sendall(json.dumps(report).encode())
    connection.close()
"""


class TestListenFds:
    def test_outside_socket_activation(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No LISTEN_FDS, no sockets."""
        monkeypatch.delenv("LISTEN_FDS", raising=False)
        monkeypatch.delenv("LISTEN_PID", raising=False)
        assert listen_fds() == []

    def test_other_process_sockets_are_left_alone(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Descriptors meant for another PID are not taken, and the variables are cleared."""
        monkeypatch.setenv("LISTEN_FDS", "1")
        monkeypatch.setenv("LISTEN_PID", "1")
        monkeypatch.setenv("LISTEN_FDNAMES", "http")
        assert listen_fds() == []
        assert not {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"} & set(os.environ)

    def test_malformed_count_is_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A LISTEN_FDS that is not a count is named in the error."""
        monkeypatch.setenv("LISTEN_FDS", "-1")
        monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
        with pytest.raises(ConfigError, match=r"LISTEN_FDS='-1'"):
            listen_fds()
        assert "LISTEN_FDS" not in os.environ

    def test_takes_fd_3_as_a_socket(self) -> None:
        """A TCP listener on fd 3 comes back as an AF_INET stream socket, close-on-exec."""
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, "by-hand"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert json.loads(child.stdout) == {
            "sockets": [[3, "AF_INET", "SOCK_STREAM"]],
            "inheritable": [False],
            "environ": [],
        }

    @pytest.mark.skipif(
        shutil.which("systemd-socket-activate") is None, reason="needs systemd-socket-activate"
    )
    def test_with_systemd_socket_activate(self, tmp_path: Path) -> None:
        """The real systemd tool passes its socket and listen_fds() serves on it."""
        path = tmp_path / "http.sock"
        with subprocess.Popen(
            [
                "systemd-socket-activate",
                "--listen",
                str(path),
                sys.executable,
                "-c",
                _CHILD,
                "real",
            ],
            cwd=REPO,
            stderr=subprocess.PIPE,
        ) as activator:
            try:
                # It prints "Listening on <path> as 3." once the socket is bound.
                assert activator.stderr is not None
                assert b"Listening on" in activator.stderr.readline()
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.settimeout(10)
                    client.connect(str(path))
                    report = json.loads(b"".join(iter(lambda: client.recv(4096), b"")))
                assert activator.wait(timeout=10) == 0
            finally:
                activator.kill()
        assert report == {
            "sockets": [[3, "AF_UNIX", "SOCK_STREAM"]],
            "inheritable": [False],
            "environ": [],
        }


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
class TestUnitFiles:
    def test_verify_is_clean(self, tmp_path: Path) -> None:
        """systemd-analyze verify finds nothing to say about either unit.

        verify checks that ExecStart's binary exists, so it runs against a
        scratch root holding a stand-in /opt/hotwire/.venv/bin/hotwire, the
        system's own units (for the default dependencies) and ours.
        """
        system_units = next(
            p for p in map(Path, ("/usr/lib/systemd/system", "/lib/systemd/system")) if p.is_dir()
        )
        shutil.copytree(system_units, tmp_path / "usr/lib/systemd/system", symlinks=True)
        for unit in ("hotwire.service", "hotwire.socket"):
            target = tmp_path / "etc/systemd/system" / unit
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(UNITS / unit, target)
        for binary in ("opt/hotwire/.venv/bin/hotwire", "bin/kill"):
            stand_in = tmp_path / binary
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
        result = subprocess.run(
            [
                "systemd-analyze",
                "verify",
                f"--root={tmp_path}",
                "hotwire.service",
                "hotwire.socket",
            ],
            capture_output=True,
            text=True,
        )
        assert (result.returncode, result.stdout + result.stderr) == (0, "")

    def test_security_exposure_is_at_most_2(self) -> None:
        """The hardening keeps systemd-analyze's exposure score at 2.0 or below."""
        result = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", str(UNITS / "hotwire.service")],
            capture_output=True,
            text=True,
            check=True,
        )
        match = re.search(r"Overall exposure level for hotwire\.service: (\d+\.\d+)", result.stdout)
        assert match is not None, result.stdout
        assert float(match[1]) <= 2.0
