"""The reference scenario end to end: POST a file, it lands in Dropbox (the emulator).

The daemon runs the repository's own services/ files, with the embedded
emulator (as `make run` does) or pointed at a separate emulator by
configuration, as it would be at real Dropbox.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import trio
from support import copy_repo_services

from daemon import Config, Daemon, main
from daemon.emulators import DropboxEmulator, DropboxEmulatorHandle

TOKEN = "reference-flow-token"


def daemon_config(tmp_path: Path, connection: dict[str, Any], **extra: Any) -> Config:
    copy_repo_services(tmp_path)
    return Config.from_mapping(
        {
            "paths": {"services": "services", "state": "state"},
            "server": {"port": 0, "grace_period": "5s"},
            "admin": {"token": "admin-token"},
            "channels": {
                "rest": [
                    {"path": "/api/upload", "service": "api.channel.rest.upload"},
                    {
                        "path": "/api/upload/stream",
                        "service": "api.channel.rest.upload.stream",
                        "max_body": "1GiB",
                    },
                ]
            },
            "cloud": {"dropbox": {"My Connection": {"user_agent": "hotwire-test", **connection}}},
            **extra,
        },
        source=tmp_path / "hotwire.toml",
    )


@pytest.fixture
async def peer(
    tmp_path: Path, nursery: trio.Nursery
) -> tuple[DropboxEmulator, DropboxEmulatorHandle]:
    emulator = DropboxEmulator(
        tmp_path / "peer", tls_dir=tmp_path / "peer-tls", access_tokens=[TOKEN, "second-token"]
    )
    return emulator, await nursery.start(emulator.run)


@pytest.fixture
def config(tmp_path: Path, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]) -> Config:
    """For the root conftest's `daemon`: a Dropbox connection pointed at `peer` by config."""
    _, handle = peer
    return daemon_config(
        tmp_path,
        {
            "token": TOKEN,
            "api_host": handle.api_host,
            "content_host": handle.content_host,
            "ca_certs": str(handle.ca_path),
        },
    )


async def test_upload_lands_in_the_embedded_emulator(tmp_path: Path) -> None:
    """As `make run`: the curl of the README puts the same bytes in the emulator's folder."""
    config = daemon_config(tmp_path, {"emulator": True}, emulators={"dropbox": {"enabled": True}})
    data = os.urandom(100_000)
    async with trio.open_nursery() as nursery:
        daemon: Daemon = await nursery.start(main, config)
        async with httpx.AsyncClient(base_url=daemon.url) as client:
            response = await client.post(
                "/api/upload", params={"file_name": "my-file.txt"}, content=data
            )
            assert response.status_code == 200, response.text
            streamed = await client.post(
                "/api/upload/stream", params={"file_name": "dir/streamed.bin"}, content=data * 30
            )
            assert streamed.json() == {"path": "/dir/streamed.bin", "size": len(data) * 30}
        daemon.stop()
    assert (config.paths.state / "dropbox" / "my-file.txt").read_bytes() == data
    assert (config.paths.state / "dropbox" / "dir" / "streamed.bin").read_bytes() == data * 30


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "must not be empty"),
        ("/", "must not be empty"),
        ("//", "must not be empty"),
        ("../escape.txt", "'..'"),
        ("a/../../b", "'..'"),
        ("bad\x01name", "control characters"),
        ("x" * 256, "at most 255 bytes"),
    ],
    ids=["empty", "slash", "slashes", "dotdot", "nested-dotdot", "control", "too-long"],
)
async def test_unsafe_file_names_are_refused(
    daemon: Daemon, peer: tuple[DropboxEmulator, DropboxEmulatorHandle], name: str, reason: str
) -> None:
    """Each unsafe name gets a 400 saying why, and nothing reaches Dropbox."""
    emulator, _ = peer
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        for path in ("/api/upload", "/api/upload/stream"):
            response = await client.post(path, params={"file_name": name}, content=b"data")
            assert response.status_code == 400
            assert reason in response.json()["error"]["message"]
        assert (
            await client.post("/api/upload", params={"file_name": "ok.txt"}, content=b"x")
        ).status_code == 200
    assert [r.route for r in emulator.requests] == ["files/upload"]


async def test_wrong_token_is_a_clear_error_with_the_cid_in_the_log(
    tmp_path: Path, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
) -> None:
    _, handle = peer
    config = daemon_config(
        tmp_path,
        {
            "token": "wrong-token",
            "api_host": handle.api_host,
            "content_host": handle.content_host,
            "ca_certs": str(handle.ca_path),
        },
    )
    async with trio.open_nursery() as nursery:
        daemon: Daemon = await nursery.start(main, config)
        async with httpx.AsyncClient(base_url=daemon.url) as client:
            with structlog.testing.capture_logs() as logs:
                response = await client.post("/api/upload", params={"file_name": "a"}, content=b"x")
            assert response.status_code == 502
            error = response.json()["error"]
            assert "Dropbox refused the credentials" in error["message"]
            assert "wrong-token" not in response.text and "Traceback" not in response.text
            failures = [line for line in logs if line["event"] == "channel_request_failed"]
            assert failures and failures[0]["cid"] == error["cid"]
            assert "wrong-token" not in repr(logs)
            ok = await client.post("/api/upload", params={"file_name": "a"}, content=b"x")
            assert ok.status_code == 502  # still serving, still refused
        daemon.stop()


async def test_token_changed_through_the_admin_api(
    daemon: Daemon, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
) -> None:
    """PUT .../secret takes effect on the next upload and is never readable back."""
    emulator, _ = peer
    headers = {"Authorization": "Bearer admin-token"}
    async with httpx.AsyncClient(base_url=daemon.url, headers=headers) as client:
        url = "/admin/connections/cloud.dropbox/My Connection/secret"
        assert (await client.put(url, json={"secret": "revoked"})).json()["secret"] == "set"
        refused = await client.post("/api/upload", params={"file_name": "a"}, content=b"x")
        assert refused.status_code == 502
        assert (await client.put(url, json={"secret": "second-token"})).status_code == 200
        accepted = await client.post("/api/upload", params={"file_name": "a"}, content=b"x")
        assert accepted.status_code == 200
        listing = (await client.get("/admin/connections")).text
        assert "second-token" not in listing and "revoked" not in listing
        assert '"token": "set"' in listing
        assert (
            await client.put(url.replace("My Connection", "Nope"), json={"secret": "x"})
        ).status_code == 404
    stored = next((daemon.config.paths.state / "secrets" / "cloud.dropbox").iterdir())
    assert stored.stat().st_mode & 0o777 == 0o600
    assert (emulator.root / "a").read_bytes() == b"x"
