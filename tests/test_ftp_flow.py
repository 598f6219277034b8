"""The FTP-to-Dropbox half of the reference scenario, with real FTP and Dropbox peers.

The daemon runs the repository's services; its connections point, by
configuration, at an FTP server and a Dropbox emulator owned by the test, so
the test can look inside both and make them fail.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import trio
from support import copy_repo_services, free_port

from daemon import Config, Daemon, main
from daemon.emulators import DropboxEmulator, FtpEmulator
from daemon.exceptions import ConnectionFailed

TOKEN = "ftp-flow-token"
ADMIN = {"Authorization": "Bearer admin-token"}


@dataclass
class Peers:
    ftp: FtpEmulator
    ftp_root: Path
    dropbox: DropboxEmulator
    connection: dict[str, dict[str, Any]]


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    ftp = FtpEmulator(tmp_path / "ftp", password="ftp-pass")
    dropbox = DropboxEmulator(tmp_path / "dropbox", tls_dir=tmp_path / "tls", access_tokens=[TOKEN])
    async with trio.open_nursery() as nursery:
        ftp_handle = await nursery.start(ftp.run)
        box = await nursery.start(dropbox.run)
        yield Peers(
            ftp,
            tmp_path / "ftp",
            dropbox,
            {
                "ftp": {
                    "host": ftp_handle.host,
                    "port": ftp_handle.port,
                    "user": "hotwire",
                    "password": "ftp-pass",
                    "timeout": "10s",
                },
                "dropbox": {
                    "user_agent": "hotwire-test",
                    "token": TOKEN,
                    "api_host": box.api_host,
                    "content_host": box.content_host,
                    "ca_certs": str(box.ca_path),
                    # failures surface at once, so that the next run retries the file
                    "max_retries_on_error": 0,
                    "max_retries_on_rate_limit": 0,
                },
            },
        )
        nursery.cancel_scope.cancel()


def config_for(tmp_path: Path, peers: Peers, **extra: Any) -> Config:
    copy_repo_services(tmp_path)
    return Config.from_mapping(
        {
            "paths": {"services": "services", "state": "state"},
            "server": {"port": 0},
            "admin": {"token": "admin-token"},
            "cloud": {"dropbox": {"My Connection": peers.connection["dropbox"]}},
            "outgoing": {"ftp": {"My FTP Connection": peers.connection["ftp"]}},
            **extra,
        },
        source=tmp_path / "hotwire.toml",
    )


@pytest.fixture
def config(tmp_path: Path, peers: Peers) -> Config:
    """The root conftest's `daemon` runs this configuration: both connections on `peers`."""
    return config_for(tmp_path, peers)


def place_files(root: Path, count: int, largest: int) -> dict[str, str]:
    """Files of sizes from 0 to ``largest`` bytes (most of them small); name -> sha256."""
    digests = {}
    for index in range(count):
        size = int(largest * (index / max(count - 1, 1)) ** 6)
        data = os.urandom(size)
        (root / f"file-{index:03}.bin").write_bytes(data)
        digests[f"file-{index:03}.bin"] = hashlib.sha256(data).hexdigest()
    return digests


def uploads_per_file(dropbox: DropboxEmulator) -> Counter[str]:
    """Successful upload calls by file: each one that commits a file counts once."""
    commits = ("files/upload", "files/upload_session/finish")
    return Counter(r.path for r in dropbox.requests if r.route in commits and r.status == 200)


async def poll(daemon: Daemon, **payload: Any) -> dict[str, int]:
    result: dict[str, int] = await daemon.router.invoke(
        "api.channel.scheduler.upload.stream", {"settle": False, **payload}, timeout=120
    )
    return result


class TestStreamingPoller:
    @pytest.mark.slow
    async def test_two_hundred_files_arrive_exactly_once(
        self, daemon: Daemon, peers: Peers
    ) -> None:
        """Files from 0 bytes to 5 MiB arrive byte-exact, once each, and leave the FTP server."""
        digests = place_files(peers.ftp_root, 200, 5 * 1024 * 1024)
        assert await poll(daemon) == {"moved": 200, "failed": 0, "waiting": 0}
        assert list(peers.ftp_root.iterdir()) == []
        stored = {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in peers.dropbox.root.iterdir()
            if p.is_file()
        }
        assert stored == digests

    async def test_failing_dropbox_needs_more_runs_but_loses_nothing(
        self, daemon: Daemon, peers: Peers
    ) -> None:
        """With 30% of Dropbox calls failing, files wait on the FTP server for the next run."""
        digests = place_files(peers.ftp_root, 200, 2 * 1024 * 1024)
        peers.dropbox.faults.fail_ratio(0.3, statuses=(500, 503, 429), retry_after=0, seed=7)
        runs = 0
        with trio.fail_after(120):
            while any(peers.ftp_root.iterdir()):
                runs += 1
                result = await poll(daemon)
                assert result["moved"] + result["failed"] > 0
        assert runs > 1
        stored = {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in peers.dropbox.root.iterdir()
            if p.is_file()
        }
        assert stored == digests
        assert set(uploads_per_file(peers.dropbox).values()) == {1}

    async def test_file_still_being_written_waits(self, daemon: Daemon, peers: Peers) -> None:
        """A file whose size changed since the last run is left for the next one."""
        growing = peers.ftp_root / "growing.bin"
        growing.write_bytes(b"x" * 1000)
        assert (await poll(daemon, settle=True))["waiting"] == 1
        growing.write_bytes(b"x" * 2000)
        assert (await poll(daemon, settle=True))["waiting"] == 1
        assert (await poll(daemon, settle=True))["moved"] == 1
        assert (peers.dropbox.root / "growing.bin").stat().st_size == 2000

    @pytest.mark.parametrize(
        "fault", ["listing", "transfer"], ids=["drop-mid-listing", "drop-mid-transfer"]
    )
    async def test_ftp_drops_are_survived(self, daemon: Daemon, peers: Peers, fault: str) -> None:
        """The server dropping the control connection mid-listing or mid-transfer costs nothing."""
        digests = place_files(peers.ftp_root, 5, 3 * 1024 * 1024)
        if fault == "listing":
            peers.ftp.faults.drop_control_connection("MLSD")
        else:
            peers.ftp.faults.drop_mid_transfer()
        assert (await poll(daemon))["moved"] == 5
        assert {p.name for p in peers.dropbox.root.iterdir() if p.is_file()} == set(digests)
        assert list(peers.ftp_root.iterdir()) == []

    async def test_undelivered_file_is_not_removed(self, daemon: Daemon, peers: Peers) -> None:
        """A file Dropbox refused stays on the FTP server."""
        (peers.ftp_root / "keep.txt").write_bytes(b"keep me")
        peers.dropbox.faults.fail_next(1, 503)
        with structlog.testing.capture_logs() as logs:
            assert (await poll(daemon))["failed"] == 1
        assert (peers.ftp_root / "keep.txt").exists()
        assert any(line["event"] == "ftp_file_not_moved" for line in logs)
        assert (await poll(daemon))["moved"] == 1


class TestZatoStylePoller:
    async def test_job_run_moves_the_files(self, daemon: Daemon, peers: Peers) -> None:
        """The tutorial's sync poller, run by a job through the admin API."""
        digests = place_files(peers.ftp_root, 10, 100_000)
        async with httpx.AsyncClient(base_url=daemon.url, headers=ADMIN) as admin:
            created = await admin.post(
                "/admin/scheduler/jobs",
                json={"name": "ftp", "service": "api.channel.scheduler.upload", "interval": "1h"},
            )
            assert created.status_code == 201, created.text
            run = await admin.post("/admin/scheduler/jobs/ftp/run")
            assert run.json()["last_status"] == "ok"
        assert list(peers.ftp_root.iterdir()) == []
        assert {p.name for p in peers.dropbox.root.iterdir() if p.is_file()} == set(digests)


class TestSchedulerAdmin:
    async def test_job_lifecycle(self, daemon: Daemon) -> None:
        async with httpx.AsyncClient(base_url=daemon.url, headers=ADMIN) as admin:
            job = {
                "name": "tick",
                "service": "api.channel.scheduler.upload.stream",
                "cron": "*/5 * * * *",
                "timezone": "Europe/Berlin",
            }
            assert (await admin.post("/admin/scheduler/jobs", json=job)).status_code == 201
            assert (await admin.post("/admin/scheduler/jobs", json=job)).status_code == 409
            listed = (await admin.get("/admin/scheduler/jobs")).json()["jobs"]
            assert [j["spec"]["name"] for j in listed] == ["tick"]
            assert listed[0]["next_run"] is not None
            paused = await admin.post("/admin/scheduler/jobs/tick/pause")
            assert paused.json()["paused"] is True
            assert (await admin.post("/admin/scheduler/jobs/tick/resume")).json()["paused"] is False
            updated = await admin.put(
                "/admin/scheduler/jobs/tick", json={**job, "interval": "1h", "cron": None}
            )
            assert updated.json()["spec"]["interval"] == 3600
            assert (await admin.delete("/admin/scheduler/jobs/tick")).status_code == 204
            assert (await admin.get("/admin/scheduler/jobs/tick")).status_code == 404

    @pytest.mark.parametrize(
        ("job", "message"),
        [
            ({"service": "no.such.service", "interval": "1m"}, "no.such.service"),
            (
                {"service": "api.channel.scheduler.upload", "cron": "every minute"},
                "cron expression",
            ),
            (
                {
                    "service": "api.channel.scheduler.upload",
                    "interval": "1m",
                    "timezone": "Mars/Olympus",
                },
                "timezone",
            ),
        ],
        ids=["unknown-service", "bad-cron", "unknown-timezone"],
    )
    async def test_bad_jobs_are_refused(
        self, daemon: Daemon, job: dict[str, str], message: str
    ) -> None:
        async with httpx.AsyncClient(base_url=daemon.url, headers=ADMIN) as admin:
            response = await admin.post("/admin/scheduler/jobs", json={"name": "bad", **job})
            assert response.status_code == 400
            assert message in response.json()["error"]["message"]


async def test_refused_ftp_connection_is_a_clear_error(tmp_path: Path, peers: Peers) -> None:
    """An FTP host refusing connections fails the run with a clear error; the daemon goes on."""
    port = peers.connection["ftp"]["port"] = free_port()
    async with trio.open_nursery() as nursery:
        daemon: Daemon = await nursery.start(main, config_for(tmp_path, peers))
        with pytest.raises(
            ConnectionFailed, match=f"'My FTP Connection' to 127.0.0.1:{port}"
        ) as info:
            await daemon.router.invoke("api.channel.scheduler.upload", timeout=30)
        assert "ftp-pass" not in str(info.value)
        async with httpx.AsyncClient(base_url=daemon.url) as client:
            assert (await client.get("/admin/health")).status_code == 200
        daemon.stop()
