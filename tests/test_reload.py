"""Reloading the configuration of a running daemon: connections replaced and closed; systemd."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from notify_support import notification_socket

from daemon import Daemon, load_config, main
from daemon.emulators import FtpEmulator, FtpEmulatorHandle
from daemon.exceptions import ConfigError, ConnectionFailed

BOX = '[cloud.dropbox.box]\nuser_agent = "test"\ntoken = "x"\n'


def write_config(root: Path, ftp: FtpEmulatorHandle, *, timeout: int, extra: str = "") -> Path:
    (root / "services").mkdir(exist_ok=True)
    path = root / "hotwire.toml"
    path.write_text(
        # A long grace period: replaced connections are not closed by its end in this test.
        '[server]\nport = 0\ngrace_period = "60s"\n'
        '[paths]\nservices = "services"\nstate = "state"\n'
        '[admin]\ntoken = "t"\n'
        '[outgoing.ftp.peer]\nhost = "127.0.0.1"\n'
        f'port = {ftp.port}\nuser = "hotwire"\npassword = "ftp-pass"\ntimeout = "{timeout}s"\n'
        + extra
    )
    return path


@pytest.fixture
async def ftp(tmp_path: Path) -> AsyncIterator[FtpEmulatorHandle]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(FtpEmulator(tmp_path / "ftp", password="ftp-pass").run)
        nursery.cancel_scope.cancel()


class TestConnections:
    async def test_stop_closes_the_connections_a_reload_made_and_replaced(
        self, tmp_path: Path, ftp: FtpEmulatorHandle
    ) -> None:
        """After a reload that replaced them, stopping closes both the new and the old pool."""
        path = write_config(tmp_path, ftp, timeout=10)
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(main, load_config(path))
            first = daemon.reloader.connections.ftp["peer"]
            await first.alistdir()
            write_config(tmp_path, ftp, timeout=20)
            await daemon.reload()
            assert daemon.config.outgoing.ftp["peer"].timeout == 20
            second = daemon.reloader.connections.ftp["peer"]
            assert second is not first
            await second.alistdir()
            daemon.stop()
        for connection in (first, second):
            with pytest.raises(ConnectionFailed, match="closed"):
                await connection.alistdir()


class TestSystemd:
    async def test_an_emulator_enabled_by_a_reload_is_refused_clearly(
        self, tmp_path: Path, ftp: FtpEmulatorHandle
    ) -> None:
        """Emulators start with the daemon: enabling one on reload says a restart is needed."""
        path = write_config(tmp_path, ftp, timeout=10)
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(main, load_config(path))
            emulated = "[emulators.ftp]\nenabled = true\n[outgoing.ftp.emu]\nemulator = true\n"
            write_config(tmp_path, ftp, timeout=20, extra=emulated)
            with pytest.raises(ConfigError, match=r"FTP emulator is not running.*takes a restart"):
                await daemon.reload()
            assert daemon.config.outgoing.ftp["peer"].timeout == 10  # the old one stays
            daemon.stop()

    async def test_ready_after_a_reload_that_failed_unexpectedly(
        self, tmp_path: Path, ftp: FtpEmulatorHandle, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A reload failing with an error other than ConfigError still ends with READY=1."""
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
        path = write_config(tmp_path, ftp, timeout=10)
        async with (
            notification_socket(tmp_path / "notify.sock") as notifications,
            trio.open_nursery() as nursery,
        ):
            daemon: Daemon = await nursery.start(main, load_config(path))
            assert (await notifications.next()).startswith("READY=1")
            # A directory where the connection's stored secret would be: reading it fails.
            (tmp_path / "state" / "secrets" / "cloud.dropbox" / b"box".hex()).mkdir(parents=True)
            write_config(tmp_path, ftp, timeout=10, extra=BOX)
            with pytest.raises(IsADirectoryError):
                await daemon.reload()
            assert (await notifications.next()).startswith("RELOADING=1")
            with trio.fail_after(5):
                failed = await notifications.next()
            assert failed == "READY=1\nSTATUS=reload failed unexpectedly; see the log"
            daemon.stop()
