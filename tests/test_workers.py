"""Several workers on one port under the supervisor, as `hotwire run` runs with workers = 2."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import trio
from notify_support import notification_socket
from support import HOTWIRE, free_port

SERVICES = """
import os
import time
from pathlib import Path
from daemon import Service

class Who(Service):
    name = "who"
    async def handle(self):
        self.response.payload = {"pid": os.getpid(), "version": VERSION}

class Tick(Service):
    name = "tick"
    def handle(self):
        with open(TICKS, "a") as file:
            file.write(f"{os.getpid()} {time.time()}\\n")

class Record(Service):
    name = "record"
    def handle(self):
        with open(RECORDS, "a") as file:
            file.write(self.request.http.params.get("n", "?") + "\\n")
"""


def write_services(root: Path, version: int) -> None:
    source = (
        SERVICES.replace("VERSION", str(version))
        .replace("TICKS", repr(str(root / "ticks.txt")))
        .replace("RECORDS", repr(str(root / "records.txt")))
    )
    path = root / "services" / "workers.py"
    temporary = path.with_name(".workers.py.tmp")
    temporary.write_text(source)
    os.replace(temporary, path)


async def pids_answering(url: str, count: int = 40) -> dict[int, int]:
    """pid -> version, from `count` requests on fresh connections (so the kernel spreads them)."""
    seen: dict[int, int] = {}
    for _ in range(count):
        async with httpx.AsyncClient(base_url=url) as client:
            answer = (await client.get("/api/who")).json()
        seen[answer["pid"]] = answer["version"]
    return seen


@pytest.mark.slow
async def test_two_workers(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "services").mkdir()
    write_services(tmp_path, 1)
    config = tmp_path / "hotwire.toml"
    config.write_text(
        f'[server]\nport = {port}\nworkers = 2\ngrace_period = "5s"\n'
        '[paths]\nservices = "services"\nstate = "state"\n[admin]\ntoken = "t"\n'
        '[deploy]\nstep = "5ms"\n'
        '[[channels.rest]]\npath = "/api/who"\nservice = "who"\nmethods = ["GET"]\n'
        '[[channels.rest]]\npath = "/api/record"\nservice = "record"\ndelivery = "durable"\n'
        '[[scheduler.jobs]]\nname = "tick"\nservice = "tick"\ninterval = "1s"\n'
    )
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    async with notification_socket(tmp_path / "notify.sock") as notifications:
        with (tmp_path / "daemon.log").open("wb") as log:
            process = await trio.lowlevel.open_process(
                [*HOTWIRE, "run", "--config", str(config)], env=env, stdout=log
            )
        try:
            with trio.fail_after(60):
                # The supervisor says READY=1 once every worker serves.
                assert (await notifications.next()).startswith("READY=1")
                first = await pids_answering(url)
                assert len(first) == 2, first  # both workers serve

                # A file change is served by both workers.
                write_services(tmp_path, 2)
                while set((await pids_answering(url, 20)).values()) != {2}:  # noqa: ASYNC110
                    await trio.sleep(0.05)  # each worker deploys on its own watcher's event

                # One worker killed: the other keeps answering, and it is started again.
                # Let the 1 s job tick a few times first.
                ticks_file = tmp_path / "ticks.txt"
                while not ticks_file.exists() or len(ticks_file.read_text().splitlines()) < 3:  # noqa: ASYNC110
                    await trio.sleep(0.1)  # another process writes it: no event to await
                victim = next(iter(first))
                killed_at = time.time()
                os.kill(victim, signal.SIGKILL)
                survivors = await pids_answering(url, 10)
                assert victim not in survivors
                while len(answering := await pids_answering(url, 20)) < 2:  # noqa: ASYNC110
                    await trio.sleep(0.2)  # the supervisor waits 1 s before restarting
                assert victim not in answering

                # The admin API answers for the machine, whichever worker takes the request.
                await _admin_answers_for_the_machine(url)

                # A durable message is delivered once, whichever worker accepted it.
                async with httpx.AsyncClient(base_url=url) as client:
                    for n in range(20):
                        response = await client.post("/api/record", params={"n": str(n)})
                        assert response.status_code == 202
                records = tmp_path / "records.txt"
                while not records.exists() or len(records.read_text().split()) < 20:  # noqa: ASYNC110
                    await trio.sleep(0.1)
                await _outbox_counted_for_the_machine(url, accepted=20)

            # Until a worker was killed (worker 0 catches up on start), the interval
            # job ran once per second for the machine, in one process.
            ticks = [line.split() for line in (tmp_path / "ticks.txt").read_text().splitlines()]
            before = sorted((float(t), pid) for pid, t in ticks if float(t) < killed_at)
            assert len(before) >= 2 and len({pid for _, pid in before}) == 1, before
            assert all(b - a > 0.5 for (a, _), (b, _) in itertools.pairwise(before)), before
        finally:
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                code = await process.wait()
    assert code == 0
    assert sorted(int(n) for n in records.read_text().split()) == list(range(20))


async def _outbox_counted_for_the_machine(url: str, accepted: int) -> None:
    """Whichever worker answers, /metrics and /admin/outbox add up every worker's counters."""
    for _ in range(10):
        async with httpx.AsyncClient(base_url=url) as client:  # a new connection
            metrics = (await client.get("/metrics")).text
        assert f"hotwire_outbox_accepted_total {accepted}.0" in metrics, metrics
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer t"}) as client:
            summary = (await client.get("/admin/outbox")).json()
        assert summary["stats"]["accepted"] == accepted, summary


async def _admin_answers_for_the_machine(url: str) -> None:
    headers = {"Authorization": "Bearer t"}

    async def get(path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, headers=headers) as client:  # a new connection
            return await client.get(path)

    before = (await get("/admin/services/who")).json()["invocations"]
    await pids_answering(url, 30)
    for _ in range(6):
        assert (await get("/admin/services/who")).json()["invocations"] == before + 30
        metrics = (await get("/metrics")).text
        assert f'hotwire_service_invocations_total{{service="who"}} {before + 30}.0' in metrics
        deployments = (await get("/admin/deployments")).json()
        assert sorted(w["worker"] for w in deployments["workers"]) == [0, 1]
        assert all(w["files"][0]["status"] == "deployed" for w in deployments["workers"])
        jobs = await get("/admin/scheduler/jobs")
        assert jobs.status_code == 200 and jobs.json()["jobs"][0]["spec"]["name"] == "tick"
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        reloaded = await client.post("/admin/reload")
    assert reloaded.status_code == 200 and reloaded.json()["missing"] == []  # both workers
