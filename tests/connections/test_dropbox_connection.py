"""DropboxConnection: the configured connection and its streaming async helpers."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from dropbox_backoff import without_backoff

from daemon._config import DropboxConnectionConfig
from daemon.connections import DropboxConnection, DropboxEndpoint
from daemon.emulators import DropboxEmulator, DropboxEmulatorHandle
from daemon.exceptions import ConnectionFailed, RemoteFileError

TOKEN = "connection-test-token"


@pytest.fixture
async def peer(
    tmp_path: Path, nursery: trio.Nursery
) -> tuple[DropboxEmulator, DropboxEmulatorHandle]:
    emulator = DropboxEmulator(
        tmp_path / "dropbox",
        tls_dir=tmp_path / "tls",
        access_tokens=[TOKEN],
        apps={"app-key": "app-secret"},
        refresh_tokens=["refresh-token"],
    )
    return emulator, await nursery.start(emulator.run)


def connect(handle: DropboxEmulatorHandle, **settings: Any) -> DropboxConnection:
    """A connection configured as a user points one at another endpoint."""
    settings = {"token": TOKEN, **settings}
    config = DropboxConnectionConfig(
        user_agent=settings.pop("user_agent", "hotwire-test/1.0"),
        api_host=handle.api_host,
        content_host=handle.content_host,
        ca_certs=handle.ca_path,
        **{
            k: _secret(v) if k in ("token", "refresh_token", "app_secret") else v
            for k, v in settings.items()
        },
    )
    return DropboxConnection("Test", config)


def _secret(value: str | None) -> Any:
    from daemon import Secret

    return None if value is None else Secret(value)


class TestUpload:
    async def test_small_upload_is_one_request(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        emulator, handle = peer
        conn = connect(handle, default_directory="/in")
        metadata = await conn.upload("a.txt", b"hello")
        assert metadata.path_display == "/in/a.txt"
        assert (emulator.root / "in" / "a.txt").read_bytes() == b"hello"
        assert [r.route for r in emulator.requests] == ["files/upload"]

    @pytest.mark.slow
    async def test_large_file_goes_up_in_chunks_byte_exact(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle], tmp_path: Path
    ) -> None:
        """A 300 MiB file is uploaded through an upload session, one chunk in memory at a time."""
        emulator, handle = peer
        source = tmp_path / "big.bin"
        digest = hashlib.sha256()
        with source.open("wb") as file:
            for _ in range(300):
                block = os.urandom(1024 * 1024)
                digest.update(block)
                file.write(block)
        conn = connect(handle, chunk_size=32 * 1024 * 1024)
        metadata = await conn.upload("/big.bin", source)
        assert metadata.size == 300 * 1024 * 1024
        stored = emulator.root / "big.bin"
        with stored.open("rb") as file:
            assert hashlib.file_digest(file, "sha256").hexdigest() == digest.hexdigest()
        routes = [r.route for r in emulator.requests]
        assert routes[0] == "files/upload_session/start"
        assert routes.count("files/upload_session/append_v2") == 8
        assert routes[-1] == "files/upload_session/finish"

    async def test_file_object_uploads_from_its_position(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """A file object not at its start sends the bytes from its position on, chunked too."""
        emulator, handle = peer
        payload = os.urandom(9 * 1024 * 1024)
        source = io.BytesIO(b"h" * 100 + payload)
        source.seek(100)
        conn = connect(handle, single_upload_limit=1024 * 1024, chunk_size=4 * 1024 * 1024)
        metadata = await conn.upload("/positioned.bin", source)
        assert metadata.size == len(payload)
        assert (emulator.root / "positioned.bin").read_bytes() == payload
        routes = [r.route for r in emulator.requests]
        assert routes.count("files/upload_session/append_v2") == 1

    @pytest.mark.parametrize("mode", ["add", "overwrite", "autorename"])
    async def test_conflict_policy(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle], mode: str
    ) -> None:
        emulator, handle = peer
        conn = connect(handle)
        await conn.upload("/same.txt", b"first")
        if mode == "add":
            with pytest.raises(RemoteFileError, match="conflict"):
                await conn.upload("/same.txt", b"second", mode="add")
            return
        metadata = await conn.upload("/same.txt", b"second", mode=mode)  # type: ignore[arg-type]
        expected = "/same.txt" if mode == "overwrite" else "/same (1).txt"
        assert metadata.path_display == expected
        assert (emulator.root / expected.lstrip("/")).read_bytes() == b"second"

    async def test_rate_limit_and_server_errors_are_retried(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """429 bursts (honouring Retry-After) and 5xx bursts end in success."""
        without_backoff(monkeypatch)
        emulator, handle = peer
        conn = connect(handle)
        emulator.faults.fail_next(2, 429, retry_after=0)
        emulator.faults.fail_next(2, 503)
        await conn.upload("/retried.txt", b"data")
        statuses = [r.status for r in emulator.requests]
        assert statuses == [429, 429, 503, 503, 200]

    async def test_dropped_connection_is_retried(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        emulator, handle = peer
        emulator.faults.drop_next(1)
        await connect(handle).upload("/dropped.txt", b"data")
        assert (emulator.root / "dropped.txt").read_bytes() == b"data"


class TestCredentials:
    async def test_refresh_token_renews_an_expired_token(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        emulator, handle = peer
        conn = connect(
            handle,
            token=None,
            refresh_token="refresh-token",
            app_key="app-key",
            app_secret="app-secret",
        )
        await conn.upload("/one.txt", b"1")
        emulator.faults.expire_access_tokens()
        await conn.upload("/two.txt", b"2")
        routes = [r.route for r in emulator.requests]
        assert routes.count("oauth2/token") == 2
        assert (emulator.root / "two.txt").read_bytes() == b"2"

    async def test_user_agent_arrives(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        emulator, handle = peer
        await connect(handle, user_agent="acme-prod").upload("/ua.txt", b"x")
        assert emulator.requests[-1].user_agent.startswith("acme-prod")

    async def test_wrong_token_is_a_clear_error(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        _, handle = peer
        with pytest.raises(
            ConnectionFailed, match="'Test': Dropbox refused the credentials"
        ) as info:
            await connect(handle, token="not-the-token").upload("/x.txt", b"x")
        assert "not-the-token" not in str(info.value)

    async def test_set_token_applies_to_the_next_call(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        _, handle = peer
        conn = connect(handle, token="stale")
        with pytest.raises(ConnectionFailed):
            await conn.upload("/x.txt", b"x")
        conn.set_token(TOKEN)
        assert (await conn.upload("/x.txt", b"x")).size == 1


class TestEmulatorConnection:
    """``emulator = true``: the embedded emulator's endpoint, with the connection's own settings."""

    async def test_configured_retries_are_honoured(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        emulator, handle = peer
        conn = DropboxConnection(
            "Emulated",
            DropboxConnectionConfig(
                user_agent="hotwire-test/1.0", emulator=True, max_retries_on_error=0
            ),
            endpoint=endpoint_of(handle),
        )
        emulator.faults.fail_next(1, 503)
        with pytest.raises(ConnectionFailed):
            await conn.upload("/once.txt", b"x")
        assert [r.status for r in emulator.requests] == [503]

    async def test_describe_names_the_hosts_used(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """The emulator's hosts for an emulated connection; its own for any other."""
        _, handle = peer
        endpoint = endpoint_of(handle)
        emulated = DropboxConnection(
            "Emulated",
            DropboxConnectionConfig(user_agent="hotwire-test/1.0", emulator=True),
            endpoint=endpoint,
        )
        real = DropboxConnection(
            "Real",
            DropboxConnectionConfig(
                user_agent="hotwire-test/1.0", app_key="key", refresh_token=_secret("refresh")
            ),
            endpoint=endpoint,
        )
        assert emulated.describe()["api_host"] == handle.api_host
        assert emulated.describe()["secrets"]["token"] == "set"
        assert real.describe()["api_host"] is None
        assert real.describe()["content_host"] is None
        assert real.describe()["secrets"]["token"] == "unset"


def endpoint_of(handle: DropboxEmulatorHandle) -> DropboxEndpoint:
    """The endpoint the daemon hands connections when the emulator is embedded."""
    return DropboxEndpoint(handle.api_host, handle.content_host, handle.ca_path, TOKEN)


class TestOtherOperations:
    async def test_list_download_delete(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle], tmp_path: Path
    ) -> None:
        _, handle = peer
        conn = connect(handle, default_directory="/box")
        for index in range(3):
            await conn.upload(f"f{index}.txt", f"content {index}".encode())
        assert sorted(entry.name for entry in await conn.list()) == ["f0.txt", "f1.txt", "f2.txt"]
        await conn.download("f1.txt", tmp_path / "f1.txt")
        assert (tmp_path / "f1.txt").read_bytes() == b"content 1"
        await conn.delete("f1.txt")
        assert sorted(entry.name for entry in await conn.list()) == ["f0.txt", "f2.txt"]
        with pytest.raises(RemoteFileError, match="not_found"):
            await conn.download("f1.txt", tmp_path / "again.txt")

    async def test_failed_download_leaves_no_part_file(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle], tmp_path: Path
    ) -> None:
        """A download that fails once the data is written leaves neither the target nor a .part."""
        _, handle = peer
        conn = connect(handle)
        await conn.upload("/f.txt", b"content")
        target = tmp_path / "occupied"
        target.mkdir()  # the final rename onto a directory fails
        with pytest.raises(IsADirectoryError):
            await conn.download("/f.txt", target)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dropbox", "occupied", "tls"]
        assert not any(target.iterdir())
