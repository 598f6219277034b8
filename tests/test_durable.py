"""Guaranteed delivery: durable channels and invokes through the outbox, end to end."""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from notify_support import notification_socket
from support import HOTWIRE, copy_repo_services, free_port, unwritable

from daemon import Config, Daemon, main
from daemon.emulators import DropboxEmulator, DropboxEmulatorHandle

TOKEN = "durable-token"
ADMIN = {"Authorization": "Bearer admin-token"}


def settings(tmp_path: Path, handle: DropboxEmulatorHandle, **outbox: Any) -> dict[str, Any]:
    copy_repo_services(tmp_path)
    return {
        "paths": {"services": "services", "state": "state"},
        "server": {"port": 0, "grace_period": "5s"},
        "admin": {"token": "admin-token"},
        "log": {"format": "json"},
        "channels": {
            "rest": [
                {
                    "path": "/api/upload/durable",
                    "service": "api.channel.rest.upload",
                    "delivery": "durable",
                },
            ]
        },
        "cloud": {
            "dropbox": {
                "My Connection": {
                    "user_agent": "hotwire-test",
                    "token": TOKEN,
                    "api_host": handle.api_host,
                    "content_host": handle.content_host,
                    "ca_certs": str(handle.ca_path),
                    "max_retries_on_error": 0,
                    "max_retries_on_rate_limit": 0,
                }
            }
        },
        "outbox": {"backoff_base": "10ms", "backoff_max": "50ms", **outbox},
    }


@pytest.fixture
async def peer(
    tmp_path: Path, nursery: trio.Nursery
) -> tuple[DropboxEmulator, DropboxEmulatorHandle]:
    emulator = DropboxEmulator(
        tmp_path / "dropbox", tls_dir=tmp_path / "tls", access_tokens=[TOKEN]
    )
    return emulator, await nursery.start(emulator.run)


async def start(
    nursery: trio.Nursery, tmp_path: Path, handle: DropboxEmulatorHandle, **outbox: Any
) -> Daemon:
    config = Config.from_mapping(settings(tmp_path, handle, **outbox), source=tmp_path / "h.toml")
    daemon: Daemon = await nursery.start(main, config)
    return daemon


class TestDurableChannel:
    async def test_accepted_then_delivered(
        self, tmp_path: Path, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """202 with a message id once on disk; the upload follows."""
        emulator, handle = peer
        data = os.urandom(200_000)
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, tmp_path, handle)
            async with httpx.AsyncClient(base_url=daemon.url) as client:
                response = await client.post(
                    "/api/upload/durable",
                    params={"file_name": "a.bin"},
                    content=data,
                    headers={"Authorization": "Bearer not-to-be-kept"},
                )
            assert response.status_code == 202
            message_id = response.json()["message_id"]
            await daemon.outbox.outbox.wait_settled()
            stored = await daemon.outbox.outbox.get(message_id)
            assert stored is not None and str(stored.state) == "delivered"
            assert "not-to-be-kept" not in repr(stored.payload)
            daemon.stop()
        assert (emulator.root / "a.bin").read_bytes() == data

    async def test_durable_invoke_from_a_service(
        self, tmp_path: Path, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """invoke_async(..., durable=True) returns a message id; the target runs later."""
        emulator, handle = peer
        (copy_repo_services(tmp_path) / "hand_off.py").write_text(
            "from daemon import Service\n"
            "class HandOff(Service):\n"
            "    name = 'test.hand_off'\n"
            "    async def handle(self):\n"
            "        self.response.payload = await self.invoke_async(\n"
            "            'api.connector.dropbox',\n"
            "            {'file_name': 'handed.txt', 'data': b'text'}, durable=True)\n"
        )
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, tmp_path, handle)
            message_id = await daemon.router.invoke("test.hand_off")
            await daemon.outbox.outbox.wait_settled()
            assert str((await daemon.outbox.outbox.get(message_id)).state) == "delivered"  # type: ignore[union-attr]
            daemon.stop()
        assert (emulator.root / "handed.txt").read_text() == "text"


class TestOutage:
    async def test_messages_wait_for_dropbox_and_dead_ones_are_retried(
        self, tmp_path: Path, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """While Dropbox fails, messages wait; past their attempts they are dead until retried."""
        emulator, handle = peer
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, tmp_path, handle, max_attempts=3)
            emulator.faults.fail_ratio(1.0, statuses=(503,))
            async with httpx.AsyncClient(base_url=daemon.url, headers=ADMIN) as client:
                ids = []
                for index in range(5):
                    response = await client.post(
                        "/api/upload/durable",
                        params={"file_name": f"f{index}"},
                        content=b"x" * index,
                    )
                    ids.append(response.json()["message_id"])
                await daemon.outbox.outbox.wait_settled()
                summary = (await client.get("/admin/outbox")).json()
                assert summary["counts"]["dead"] == 5
                dead = (await client.get("/admin/outbox/messages", params={"state": "dead"})).json()
                assert sorted(m["id"] for m in dead["messages"]) == sorted(ids)
                assert "503" in dead["messages"][0]["last_error"]
                assert list(emulator.root.glob("f*")) == []
                emulator.faults.clear()
                for message_id in ids:
                    retried = await client.post(f"/admin/outbox/messages/{message_id}/retry")
                    assert retried.status_code == 200
                await daemon.outbox.outbox.wait_settled()
                assert (await client.get("/admin/outbox")).json()["counts"]["delivered"] == 5
                metrics = (await client.get("/metrics")).text
                assert 'hotwire_outbox_messages{state="delivered"} 5.0' in metrics
            daemon.stop()
        assert sorted(p.name for p in emulator.root.glob("f*")) == [f"f{i}" for i in range(5)]

    async def test_unwritable_spool_refuses_clearly_and_recovers(
        self, tmp_path: Path, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """A read-only spool: 503 saying why, nothing recorded; normal service afterwards."""
        _, handle = peer
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, tmp_path, handle)
            incoming = daemon.outbox.spool.incoming
            async with httpx.AsyncClient(base_url=daemon.url, headers=ADMIN) as client:
                with unwritable(incoming):
                    refused = await client.post(
                        "/api/upload/durable", params={"file_name": "r"}, content=b"data"
                    )
                    assert refused.status_code in (503, 507)
                    assert "not writable" in refused.json()["error"]["message"]
                    counts = (await client.get("/admin/outbox")).json()["counts"]
                    assert sum(counts.values()) == 0
                accepted = await client.post(
                    "/api/upload/durable", params={"file_name": "r"}, content=b"data"
                )
                assert accepted.status_code == 202
            daemon.stop()


# httpx leaves a request's body iterator unclosed when the server dies under it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.slow
@pytest.mark.parametrize("round_", range(5))
async def test_crash_loses_nothing_accepted(
    tmp_path: Path, peer: tuple[DropboxEmulator, DropboxEmulatorHandle], round_: int
) -> None:
    """SIGKILL in the middle of 500 durable uploads: after a restart every 202 is in Dropbox.

    The daemon is a real subprocess; the Dropbox emulator lives in the test and
    counts how often each file was committed (more than once is allowed only as
    an identical overwrite, which the byte check shows).
    """
    emulator, handle = peer
    config = settings(tmp_path, handle)
    config["server"]["port"] = free_port()
    config["server"]["workers"] = 1  # a crash of the one process that accepted
    path = tmp_path / "hotwire.toml"
    path.write_text(_toml(config))
    rng = random.Random(round_)  # the sizes and the kill point; the timing is the machine's
    files = {f"file-{i:03}.bin": rng.randbytes(rng.randint(0, 64 * 1024)) for i in range(500)}
    kill_after = rng.randint(50, 450)
    accepted: set[str] = set()
    url = f"http://127.0.0.1:{config['server']['port']}"
    notify_path = tmp_path / "notify.sock"  # READY=1 arrives here: the daemon is up

    async def run_daemon() -> trio.Process:
        # Its log goes to a file: a pipe nobody reads would fill and stall the daemon.
        with (tmp_path / "daemon.log").open("ab") as log:
            process = await trio.lowlevel.open_process(
                [*HOTWIRE, "run", "--config", str(path)],
                stdout=log,
                env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
            )
        while not (await notifications.next()).startswith("READY=1"):
            pass
        return process

    async with notification_socket(notify_path) as notifications:
        with trio.fail_after(120):
            process = await run_daemon()
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                limiter = trio.CapacityLimiter(16)

                async def upload(name: str) -> None:
                    async with limiter:
                        if len(accepted) >= kill_after and process.returncode is None:
                            process.send_signal(signal.SIGKILL)
                        try:
                            response = await client.post(
                                "/api/upload/durable",
                                params={"file_name": name},
                                content=files[name],
                            )
                        except httpx.HTTPError:
                            return  # killed before it answered: not accepted, may be lost
                        if response.status_code == 202:
                            accepted.add(name)

                async with trio.open_nursery() as nursery:
                    for name in files:
                        nursery.start_soon(upload, name)
            await process.wait()
            process = await run_daemon()
            try:
                async with httpx.AsyncClient(base_url=url, headers=ADMIN) as admin:
                    # The outbox is in another process: nothing here to await but its answers.
                    while True:
                        counts = (await admin.get("/admin/outbox")).json()["counts"]
                        if counts["pending"] + counts["delivering"] == 0:
                            break
                        await trio.sleep(0.05)
            finally:
                process.send_signal(signal.SIGTERM)
                await process.wait()
    assert 0 < len(accepted) < len(files), f"seed {round_}: accepted {len(accepted)}"
    for name in accepted:
        assert (emulator.root / name).read_bytes() == files[name], f"seed {round_}: {name}"
    commits = Counter(
        r.path for r in emulator.requests if r.route == "files/upload" and r.status == 200
    )
    twice = sorted(p for p, n in commits.items() if n > 1)
    print(
        f"seed {round_}: accepted {len(accepted)} of {len(files)}, killed after {kill_after}; "
        f"delivered twice: {len(twice)} {twice}"
    )


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for this test's settings (tables, arrays of tables, scalars)."""
    import json

    lines, tables = [], []
    for key, value in data.items():
        name = f'"{key}"' if " " in key else key
        if isinstance(value, dict):
            tables.append(_toml(value, f"{prefix}{name}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in item.items())
                tables.append(f"[[{prefix}{name}]]\n{body}\n")
        else:
            lines.append(f"{name} = {json.dumps(value)}")
    head = f"[{prefix[:-1]}]\n" if prefix and lines else ""
    return head + "\n".join(lines) + ("\n" if lines else "") + "\n".join(tables)
