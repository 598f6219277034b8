"""The pooled FTP/FTPS connection against the embedded pyftpdlib server on loopback."""

from __future__ import annotations

import io
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, cast

import pytest
import structlog
import trio
from support import free_port

from daemon.connections import _ftp as ftp_module
from daemon.connections._ftp import FtpConnection
from daemon.connections._ftp_session import FileInfo
from daemon.emulators._ftp import FtpEmulator, FtpEmulatorHandle
from daemon.exceptions import ConnectionFailed, RemoteFileError

PASSWORD = "s3cret-ftp-password"
CONTENT = bytes(range(256)) * 1024  # 256 KiB: several transfer blocks


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "ftp"


@pytest.fixture(params=[False, True], ids=["ftp", "ftps"])
def emulator(request: pytest.FixtureRequest, root: Path, tmp_path: Path) -> FtpEmulator:
    return FtpEmulator(root, password=PASSWORD, tls=request.param, tls_dir=tmp_path / "tls")


@pytest.fixture
async def server(emulator: FtpEmulator, nursery: trio.Nursery) -> FtpEmulatorHandle:
    handle: FtpEmulatorHandle = await nursery.start(emulator.run)
    return handle


def connect(handle: FtpEmulatorHandle, **options: object) -> FtpConnection:
    settings: dict[str, object] = {
        "host": handle.host,
        "port": handle.port,
        "user": handle.user,
        "password": PASSWORD,
        "tls": handle.ca_path is not None,
        "ca_certs": handle.ca_path,
        "timeout": 5.0,
    }
    settings.update(options)
    return FtpConnection("My FTP", **settings)  # type: ignore[arg-type]


@pytest.fixture
async def conn(server: FtpEmulatorHandle) -> AsyncIterator[FtpConnection]:
    connection = connect(server)
    yield connection
    await connection.aclose()


class TestFileSystemApi:
    """Every method, in plain FTP and in FTPS."""

    async def test_listdir(self, conn: FtpConnection, root: Path) -> None:
        """Names, sorted, files and directories, without . and .."""
        (root / "b.txt").write_bytes(b"b")
        (root / "a.txt").write_bytes(b"a")
        (root / "sub").mkdir()
        (root / "sub" / "inner.txt").write_bytes(b"i")
        assert await conn.alistdir() == ["a.txt", "b.txt", "sub"]
        assert await conn.alistdir("sub") == ["inner.txt"]
        assert await trio.to_thread.run_sync(conn.listdir, "/sub") == ["inner.txt"]

    async def test_listdir_info(self, conn: FtpConnection, root: Path) -> None:
        """Sizes, UTC mtimes and directory flags in one listing."""
        (root / "a.txt").write_bytes(b"12345")
        (root / "sub").mkdir()
        info = await conn.alistdir_info()
        assert set(info) == {"a.txt", "sub"}
        assert info["a.txt"].size == 5
        assert not info["a.txt"].is_dir
        assert info["sub"].is_dir
        mtime = info["a.txt"].mtime
        assert mtime is not None
        assert abs(mtime - datetime.now(UTC)) < timedelta(minutes=1)

    async def test_getbytes_and_setbytes(self, conn: FtpConnection, root: Path) -> None:
        """Bytes go to a real file and come back unchanged."""
        await conn.asetbytes("data.bin", CONTENT)
        assert (root / "data.bin").read_bytes() == CONTENT
        assert await conn.agetbytes("data.bin") == CONTENT
        await conn.asetbytes("data.bin", b"replaced")
        assert await trio.to_thread.run_sync(conn.getbytes, "data.bin") == b"replaced"

    async def test_download_to_path_and_stream(
        self, conn: FtpConnection, root: Path, tmp_path: Path
    ) -> None:
        """A local path gets the whole file (no .part left); a stream gets the bytes appended."""
        (root / "big.bin").write_bytes(CONTENT)
        target = tmp_path / "local.bin"
        await conn.adownload("big.bin", target)
        assert target.read_bytes() == CONTENT
        assert not (tmp_path / "local.bin.part").exists()
        stream = io.BytesIO(b"header:")
        stream.seek(0, io.SEEK_END)
        await conn.adownload("big.bin", stream)
        assert stream.getvalue() == b"header:" + CONTENT

    async def test_upload_from_path_and_stream(
        self, conn: FtpConnection, root: Path, tmp_path: Path
    ) -> None:
        """A local path or an open binary file is stored whole."""
        source = tmp_path / "source.bin"
        source.write_bytes(CONTENT)
        await conn.aupload(source, "from-path.bin")
        assert (root / "from-path.bin").read_bytes() == CONTENT
        with source.open("rb") as stream:
            await conn.aupload(stream, "from-stream.bin")
        assert (root / "from-stream.bin").read_bytes() == CONTENT

    async def test_remove(self, conn: FtpConnection, root: Path) -> None:
        """The file is gone; removing it again is a 550."""
        (root / "gone.txt").write_bytes(b"x")
        await conn.aremove("gone.txt")
        assert not (root / "gone.txt").exists()
        with pytest.raises(RemoteFileError) as caught:
            await conn.aremove("gone.txt")
        assert caught.value.code == 550

    async def test_rename_and_move(self, conn: FtpConnection, root: Path) -> None:
        """rename and its alias move, also into another directory."""
        (root / "old.txt").write_bytes(b"x")
        (root / "archive").mkdir()
        await conn.arename("old.txt", "new.txt")
        await conn.amove("new.txt", "archive/new.txt")
        assert (root / "archive" / "new.txt").read_bytes() == b"x"
        assert not (root / "old.txt").exists()

    async def test_exists(self, conn: FtpConnection, root: Path) -> None:
        """True for files and directories, False for what is not there."""
        (root / "here.txt").write_bytes(b"x")
        (root / "dir").mkdir()
        assert await conn.aexists("here.txt")
        assert await conn.aexists("dir")
        assert not await conn.aexists("missing.txt")

    async def test_getinfo(self, conn: FtpConnection, root: Path) -> None:
        """Size and mtime of a file; is_dir for a directory."""
        (root / "f.bin").write_bytes(CONTENT)
        info = await conn.agetinfo("f.bin")
        assert info.size == len(CONTENT)
        assert info.mtime is not None
        assert info.mtime.tzinfo is UTC
        assert abs(info.mtime.timestamp() - (root / "f.bin").stat().st_mtime) < 1
        (root / "d").mkdir()
        assert (await conn.agetinfo("d")).is_dir

    async def test_makedir(self, conn: FtpConnection, root: Path) -> None:
        """A real directory appears; making it again is refused."""
        await conn.amakedir("new-dir")
        assert (root / "new-dir").is_dir()
        with pytest.raises(RemoteFileError):
            await conn.amakedir("new-dir")

    async def test_missing_file_names_connection_and_reply(
        self, conn: FtpConnection, server: FtpEmulatorHandle
    ) -> None:
        """The error says which connection, which peer, what was asked and the reply."""
        with pytest.raises(RemoteFileError) as caught:
            await conn.agetbytes("missing.txt")
        message = str(caught.value)
        assert message.startswith(f"FTP connection 'My FTP' to 127.0.0.1:{server.port}: ")
        assert "getbytes 'missing.txt'" in message
        assert "550" in message
        assert caught.value.code == 550

    async def test_tls_is_really_used(self, conn: FtpConnection, emulator: FtpEmulator) -> None:
        """With tls=True the pooled session's control socket is an SSLSocket."""
        await conn.alistdir()
        [session] = conn._idle
        assert isinstance(session.ftp.sock, ssl.SSLSocket) is emulator.tls

    async def test_active_mode(self, server: FtpEmulatorHandle, root: Path) -> None:
        """passive=False: the server connects back for data (PORT)."""
        (root / "a.txt").write_bytes(CONTENT)
        conn = connect(server, passive=False)
        try:
            assert await conn.agetbytes("a.txt") == CONTENT
            assert await conn.alistdir() == ["a.txt"]
        finally:
            await conn.aclose()


class TestPool:
    """Sessions are reused, bounded and replaced when they break."""

    async def test_sequential_calls_reuse_one_session(
        self, conn: FtpConnection, emulator: FtpEmulator, root: Path
    ) -> None:
        """Ten calls, one login."""
        (root / "a.txt").write_bytes(b"a")
        for _ in range(10):
            assert await conn.agetbytes("a.txt") == b"a"
        assert emulator.logins == 1

    async def test_concurrent_calls_stay_within_pool_size(
        self, server: FtpEmulatorHandle, emulator: FtpEmulator, root: Path
    ) -> None:
        """20 concurrent downloads with pool_size 4: all correct, at most 4 sessions."""
        for index in range(20):
            (root / f"f{index}.bin").write_bytes(CONTENT[index:])
        conn = connect(server, pool_size=4)
        results: dict[int, bytes] = {}

        async def fetch(index: int) -> None:
            results[index] = await conn.agetbytes(f"f{index}.bin")

        try:
            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(fetch, index)
        finally:
            await conn.aclose()
        assert results == {index: CONTENT[index:] for index in range(20)}
        assert 1 <= emulator.logins <= 4

    async def test_close_logs_out_and_refuses_later_calls(self, server: FtpEmulatorHandle) -> None:
        """After close, a call raises ConnectionFailed saying the connection is closed."""
        conn = connect(server)
        await conn.alistdir()
        await conn.aclose()
        assert conn._idle == []
        with pytest.raises(ConnectionFailed, match="closed"):
            await conn.alistdir()


class TestRecovery:
    """A server that drops the connection: idempotent calls recover on a fresh session."""

    async def test_listing_dropped_once_is_retried(
        self, conn: FtpConnection, emulator: FtpEmulator, root: Path
    ) -> None:
        """MLSD kills the session; the retry on a new one returns the right names."""
        (root / "a.txt").write_bytes(b"a")
        await conn.alistdir()
        emulator.faults.drop_control_connection("MLSD")
        assert await conn.alistdir() == ["a.txt"]
        assert emulator.logins == 2

    async def test_listing_dropped_twice_fails_clearly(
        self, conn: FtpConnection, emulator: FtpEmulator
    ) -> None:
        """One retry only: the second drop surfaces as ConnectionFailed."""
        emulator.faults.drop_control_connection("MLSD", count=2)
        with pytest.raises(ConnectionFailed, match="closed the connection"):
            await conn.alistdir()
        assert await conn.alistdir() == []

    async def test_transfer_dropped_midway_is_retried(
        self, conn: FtpConnection, emulator: FtpEmulator, root: Path, tmp_path: Path
    ) -> None:
        """Half a file then a dead session: getbytes and download still deliver it whole."""
        (root / "big.bin").write_bytes(CONTENT)
        emulator.faults.drop_mid_transfer()
        assert await conn.agetbytes("big.bin") == CONTENT
        assert emulator.logins == 2
        emulator.faults.drop_mid_transfer()
        await conn.adownload("big.bin", tmp_path / "copy.bin")
        assert (tmp_path / "copy.bin").read_bytes() == CONTENT
        assert emulator.logins == 3

    async def test_unrewindable_sink_is_not_retried(
        self, conn: FtpConnection, emulator: FtpEmulator, root: Path
    ) -> None:
        """A sink that cannot seek would get the first half twice: fail instead."""
        (root / "big.bin").write_bytes(CONTENT)
        emulator.faults.drop_mid_transfer()
        sink = _Unseekable()
        with pytest.raises(ConnectionFailed, match=r"download 'big\.bin'"):
            await conn.adownload("big.bin", cast(IO[bytes], sink))
        assert sink.received == CONTENT[: len(CONTENT) // 2]

    async def test_remove_dropped_once_is_retried(
        self, conn: FtpConnection, emulator: FtpEmulator, root: Path
    ) -> None:
        """DELE on a dead session, then on a fresh one: the file is removed."""
        (root / "a.txt").write_bytes(b"a")
        emulator.faults.drop_control_connection("DELE")
        await conn.aremove("a.txt")
        assert not (root / "a.txt").exists()
        assert emulator.logins == 2

    async def test_remove_whose_reply_was_lost_counts_as_done(
        self, conn: FtpConnection, emulator: FtpEmulator, root: Path
    ) -> None:
        """The server deleted, then the session died: the retry's 550 means success."""
        (root / "a.txt").write_bytes(b"a")
        emulator.faults.drop_control_connection("DELE", after_execution=True)
        await conn.aremove("a.txt")
        assert not (root / "a.txt").exists()
        assert emulator.logins == 2

    async def test_makedir_whose_reply_was_lost_counts_as_done(
        self, conn: FtpConnection, emulator: FtpEmulator, root: Path
    ) -> None:
        """The server made the directory, then the session died: the retry's 550 means success."""
        emulator.faults.drop_control_connection("MKD", after_execution=True)
        await conn.amakedir("made")
        assert (root / "made").is_dir()
        assert emulator.logins == 2

    async def test_rename_is_never_retried(
        self, conn: FtpConnection, emulator: FtpEmulator, root: Path
    ) -> None:
        """A dropped rename surfaces; the file is where it was."""
        (root / "a.txt").write_bytes(b"a")
        emulator.faults.drop_control_connection("RNFR")
        with pytest.raises(ConnectionFailed, match=r"rename 'a\.txt' to 'b\.txt'"):
            await conn.arename("a.txt", "b.txt")
        assert (root / "a.txt").exists()
        assert emulator.logins == 1

    async def test_rename_whose_reply_was_lost_surfaces(
        self, conn: FtpConnection, emulator: FtpEmulator, root: Path
    ) -> None:
        """Why rename is not retried: the server may have renamed before the session died."""
        (root / "a.txt").write_bytes(b"a")
        emulator.faults.drop_control_connection("RNTO", after_execution=True)
        with pytest.raises(ConnectionFailed):
            await conn.arename("a.txt", "b.txt")
        assert (root / "b.txt").exists()

    async def test_stale_idle_session_is_replaced_before_use(
        self,
        conn: FtpConnection,
        emulator: FtpEmulator,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A session idle past the probe age is checked with NOOP; a dead one is replaced,
        so even a rename (never retried) succeeds."""
        monkeypatch.setattr(ftp_module, "_PROBE_AFTER", 0.0)
        (root / "a.txt").write_bytes(b"a")
        await conn.alistdir()
        emulator.faults.drop_control_connection("NOOP")
        await conn.arename("a.txt", "b.txt")
        assert (root / "b.txt").exists()
        assert emulator.logins == 2


class TestFailures:
    """Unreachable, silent or unwelcoming servers give clear errors fast."""

    async def test_refused_port(self) -> None:
        """Nothing listens: ConnectionFailed at once, naming host:port."""
        port = free_port()
        conn = FtpConnection("My FTP", host="127.0.0.1", port=port, timeout=5)
        with trio.fail_after(2), pytest.raises(ConnectionFailed) as caught:
            await conn.alistdir()
        assert f"FTP connection 'My FTP' to 127.0.0.1:{port}" in str(caught.value)
        assert "refused" in str(caught.value).lower()

    async def test_silent_server_times_out(self, nursery: trio.Nursery) -> None:
        """A server that accepts but never sends its banner: an error within the timeout."""
        listeners = await nursery.start(partial(trio.serve_tcp, _never_answer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        conn = FtpConnection("My FTP", host="127.0.0.1", port=port, timeout=0.5)
        with trio.fail_after(3), pytest.raises(ConnectionFailed, match="within the timeout"):
            await conn.alistdir()

    async def test_wrong_password_never_leaks(self, server: FtpEmulatorHandle) -> None:
        """530 is reported; the password is in no message, repr or log line."""
        conn = connect(server, password="wrong-" + PASSWORD)
        with structlog.testing.capture_logs() as logs, pytest.raises(ConnectionFailed) as caught:
            await conn.alistdir()
        assert "530" in str(caught.value)
        assert "cannot log in" in str(caught.value)
        for text in (str(caught.value), repr(caught.value), repr(conn), repr(logs)):
            assert PASSWORD not in text


class TestTlsVerification:
    """FTPS verifies the server's certificate."""

    @pytest.fixture
    def emulator(self, root: Path, tmp_path: Path) -> FtpEmulator:
        return FtpEmulator(root, password=PASSWORD, tls=True, tls_dir=tmp_path / "tls")

    async def test_unknown_ca_is_refused(self, server: FtpEmulatorHandle) -> None:
        """Without the emulator's CA the handshake fails, with a clear error."""
        conn = connect(server, ca_certs=None)
        with pytest.raises(ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await conn.alistdir()


class TestWithoutMlst:
    """Against a server without MLST/MLSD, the same API works through NLST, SIZE and MDTM."""

    @pytest.fixture
    def emulator(self, root: Path) -> FtpEmulator:
        return FtpEmulator(root, password=PASSWORD, mlst=False)

    async def test_listing_and_info(self, conn: FtpConnection, root: Path) -> None:
        """listdir, listdir_info, getinfo and exists agree with the directory on disk."""
        (root / "a.txt").write_bytes(b"12345")
        (root / "sub").mkdir()
        assert await conn.alistdir() == ["a.txt", "sub"]
        info = await conn.alistdir_info()
        assert info["a.txt"].size == 5
        assert info["a.txt"].mtime is not None
        assert info["sub"] == FileInfo(size=0, mtime=None, is_dir=True)
        assert (await conn.agetinfo("a.txt")).size == 5
        assert await conn.aexists("sub")
        assert not await conn.aexists("missing")
        await conn.amakedir("made")
        assert (root / "made").is_dir()


class _Unseekable(io.RawIOBase):
    """A binary sink that cannot rewind, like a pipe or a socket."""

    def __init__(self) -> None:
        self.received = b""

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.received += bytes(data)
        return len(data)


async def _never_answer(stream: trio.SocketStream) -> None:
    async with stream:
        await trio.sleep_forever()
