"""The embedded FTP emulator, driven by the stdlib's ftplib as a real client."""

from __future__ import annotations

import ftplib
import logging
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio
from support import free_port

from daemon.emulators._ftp import FtpEmulator, FtpEmulatorHandle

PASSWORD = "emulator-secret"
T = TypeVar("T")


def login(handle: FtpEmulatorHandle, *, password: str = PASSWORD) -> ftplib.FTP:
    """A logged-in ftplib session; FTPS with protected data when the emulator speaks TLS."""
    ftp: ftplib.FTP
    if handle.ca_path is not None:
        context = ssl.create_default_context(cafile=str(handle.ca_path))
        ftp = ftplib.FTP_TLS(context=context, timeout=5)
    else:
        ftp = ftplib.FTP(timeout=5)
    try:
        ftp.connect(handle.host, handle.port)
        ftp.login(handle.user, password)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
    except BaseException:
        ftp.close()
        raise
    return ftp


async def in_thread(handle: FtpEmulatorHandle, session: Callable[[ftplib.FTP], T]) -> T:
    """Run ``session`` on a fresh logged-in client in a thread, then close the client."""

    def run() -> T:
        ftp = login(handle)
        try:
            return session(ftp)
        finally:
            ftp.close()

    return await trio.to_thread.run_sync(run)


def retrieve(ftp: ftplib.FTP, name: str) -> bytes:
    chunks: list[bytes] = []
    ftp.retrbinary(f"RETR {name}", chunks.append)
    return b"".join(chunks)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "ftp"


@pytest.fixture
def emulator(root: Path) -> FtpEmulator:
    return FtpEmulator(root, password=PASSWORD)


@pytest.fixture
async def handle(emulator: FtpEmulator, nursery: trio.Nursery) -> AsyncIterator[FtpEmulatorHandle]:
    yield await nursery.start(emulator.run)


class TestServing:
    """The emulator serves a real directory to a real client."""

    async def test_handle_reports_where_it_listens(
        self, handle: FtpEmulatorHandle, root: Path
    ) -> None:
        """Port 0 becomes a real port; the root directory is created."""
        assert handle.host == "127.0.0.1"
        assert handle.port > 0
        assert handle.root == root
        assert handle.ca_path is None
        assert await trio.Path(root).is_dir()

    async def test_a_dropped_file_is_listed_and_retrieved(
        self, handle: FtpEmulatorHandle, root: Path
    ) -> None:
        """A file put into the root by hand is what a client lists and downloads."""
        (root / "in.txt").write_bytes(b"dropped by hand")

        def session(ftp: ftplib.FTP) -> tuple[list[str], bytes]:
            return ftp.nlst(), retrieve(ftp, "in.txt")

        names, data = await in_thread(handle, session)
        assert names == ["in.txt"]
        assert data == b"dropped by hand"

    async def test_an_upload_lands_in_the_root(self, handle: FtpEmulatorHandle, root: Path) -> None:
        """STOR writes a real file a person can look at."""
        from io import BytesIO

        await in_thread(handle, lambda ftp: ftp.storbinary("STOR out.bin", BytesIO(b"\x00\x01")))
        assert (root / "out.bin").read_bytes() == b"\x00\x01"

    async def test_wrong_password_is_refused_at_once(self, handle: FtpEmulatorHandle) -> None:
        """530, without pyftpdlib's default 3 s penalty delay."""
        with trio.fail_after(2):
            with pytest.raises(ftplib.error_perm, match=r"^530"):
                await trio.to_thread.run_sync(lambda: login(handle, password="wrong"))

    async def test_logins_are_counted(
        self, emulator: FtpEmulator, handle: FtpEmulatorHandle
    ) -> None:
        """Every successful login counts once."""
        assert emulator.logins == 0
        await in_thread(handle, lambda ftp: ftp.pwd())
        await in_thread(handle, lambda ftp: ftp.pwd())
        assert emulator.logins == 2

    async def test_without_mlst_it_announces_none(self, root: Path, nursery: trio.Nursery) -> None:
        """mlst=False imitates an older server: no MLST in FEAT, MLSD unknown."""
        handle = await nursery.start(FtpEmulator(root, password=PASSWORD, mlst=False).run)

        def session(ftp: ftplib.FTP) -> str:
            with pytest.raises(ftplib.error_perm, match=r"^500"):
                list(ftp.mlsd())
            return ftp.sendcmd("FEAT")

        features = await in_thread(handle, session)
        assert "MLST" not in features
        assert "SIZE" in features

    async def test_passive_ports_are_honoured(self, root: Path, nursery: trio.Nursery) -> None:
        """PASV answers with a port from the configured range."""
        free = free_port()
        emulator = FtpEmulator(root, password=PASSWORD, passive_ports=range(free, free + 1))
        handle = await nursery.start(emulator.run)

        def session(ftp: ftplib.FTP) -> int:
            return ftplib.parse227(ftp.sendcmd("PASV"))[1]

        assert await in_thread(handle, session) == free


class TestLifecycle:
    """Starting and stopping leave nothing behind."""

    async def test_cancellation_closes_socket_and_thread(self, root: Path) -> None:
        """After the emulator's scope is cancelled, its port refuses and its thread is gone."""
        emulator = FtpEmulator(root, password=PASSWORD)
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(emulator.run)
            client = await trio.to_thread.run_sync(login, handle)  # left open on purpose
            thread_name = f"FTP emulator {handle.host}:{handle.port}"
            assert any(t.name == thread_name for t in threading.enumerate())
            nursery.cancel_scope.cancel()
        try:
            # The server closed our session when it stopped.
            with pytest.raises((EOFError, OSError)):
                await trio.to_thread.run_sync(client.pwd)
        finally:
            client.close()
        assert not any(t.name == thread_name for t in threading.enumerate())
        with trio.socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            await probe.connect((handle.host, handle.port))

    async def test_pyftpdlib_stays_quiet(
        self, handle: FtpEmulatorHandle, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Its per-command INFO lines are dropped even where the root logger takes DEBUG."""
        caplog.set_level(logging.DEBUG)
        # pyftpdlib serves one command at a time: by the NOOP's reply it has
        # logged whatever it logs for the login and the PWD.
        await in_thread(handle, lambda ftp: (ftp.pwd(), ftp.voidcmd("NOOP")))
        chatty = [
            record
            for record in caplog.records
            if record.name.startswith("pyftpdlib") and record.levelno < logging.WARNING
        ]
        assert chatty == []


class TestTls:
    """tls=True is explicit FTPS with a certificate from the local CA."""

    @pytest.fixture
    def emulator(self, root: Path, tmp_path: Path) -> FtpEmulator:
        return FtpEmulator(root, password=PASSWORD, tls=True, tls_dir=tmp_path / "tls")

    async def test_client_verifies_and_speaks_tls(
        self, handle: FtpEmulatorHandle, root: Path, tmp_path: Path
    ) -> None:
        """The CA in the handle verifies the server; control and data are encrypted."""
        assert handle.ca_path == tmp_path / "tls" / "ca.pem"
        (root / "secret.txt").write_bytes(b"over tls")

        def session(ftp: ftplib.FTP) -> tuple[bool, bytes]:
            return isinstance(ftp.sock, ssl.SSLSocket), retrieve(ftp, "secret.txt")

        encrypted, data = await in_thread(handle, session)
        assert encrypted
        assert data == b"over tls"

    async def test_plain_login_is_refused(self, handle: FtpEmulatorHandle) -> None:
        """Without AUTH TLS the server does not accept USER."""
        plain = FtpEmulatorHandle(handle.host, handle.port, handle.root, handle.user, None)
        with pytest.raises(ftplib.error_perm, match="SSL/TLS required"):
            await trio.to_thread.run_sync(login, plain)


class TestFaults:
    """Injected faults fire the requested number of times, then the server behaves."""

    async def test_drop_control_connection_on_a_command(
        self, emulator: FtpEmulator, handle: FtpEmulatorHandle, root: Path
    ) -> None:
        """The control connection closes without a reply when the command arrives."""
        (root / "a.txt").write_bytes(b"a")
        emulator.faults.drop_control_connection("nlst", count=2)
        for _ in range(2):
            with pytest.raises(EOFError):
                await in_thread(handle, lambda ftp: ftp.nlst())
        assert await in_thread(handle, lambda ftp: ftp.nlst()) == ["a.txt"]

    async def test_drop_mid_transfer(
        self, emulator: FtpEmulator, handle: FtpEmulatorHandle, root: Path
    ) -> None:
        """Half the file arrives, then both connections close with no 226."""
        (root / "big.bin").write_bytes(bytes(range(256)) * 64)
        emulator.faults.drop_mid_transfer()
        received: list[bytes] = []

        def session(ftp: ftplib.FTP) -> None:
            ftp.retrbinary("RETR big.bin", received.append)

        with pytest.raises(EOFError):
            await in_thread(handle, session)
        assert b"".join(received) == (bytes(range(256)) * 64)[: 256 * 32]
        assert await in_thread(handle, lambda ftp: retrieve(ftp, "big.bin")) == (
            bytes(range(256)) * 64
        )

    async def test_drop_after_execution(
        self, emulator: FtpEmulator, handle: FtpEmulatorHandle, root: Path
    ) -> None:
        """The command takes effect; only its reply is lost."""
        (root / "a.txt").write_bytes(b"a")
        emulator.faults.drop_control_connection("DELE", after_execution=True)
        with pytest.raises(EOFError):
            await in_thread(handle, lambda ftp: ftp.delete("a.txt"))
        assert not (root / "a.txt").exists()

    async def test_clear_disarms(self, emulator: FtpEmulator, handle: FtpEmulatorHandle) -> None:
        """clear() removes every armed fault."""
        emulator.faults.drop_control_connection("PWD")
        emulator.faults.drop_mid_transfer(3)
        emulator.faults.clear()
        assert await in_thread(handle, lambda ftp: ftp.pwd()) == "/"
