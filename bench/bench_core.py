"""Core runtime benchmarks (issue 2), each beside its floor in the same run.

(a) invoke round trips/s through the router vs raw Trio ping-pong (an Event
    plus a result slot; a reply channel per request);
(b) hot-deploy latency: os.replace of a changed file -> the new version
    answering an invoke, vs the bare watchfiles.awatch event latency, same step;
(c) start-up deploying 1,000 services from 100 files.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import watchfiles

from daemon import Config, Service
from daemon import main as run_daemon
from daemon._logging import configure_logging
from daemon.testing import service_harness

ROUND_TRIPS = 50_000
ROUNDS = 5
DEPLOY_SAMPLES = 30
STEP_MS = 10


class Echo(Service):
    name = "bench.echo"
    concurrency = 1

    async def handle(self) -> None:
        self.response.payload = self.request.payload


async def floor_event_slot(n: int) -> float:
    """One server task; each request carries an Event and a slot for the result."""

    class Slot:
        __slots__ = ("done", "payload", "result")

        def __init__(self, payload: Any) -> None:
            self.payload = payload
            self.done = trio.Event()
            self.result: Any = None

    send, receive = trio.open_memory_channel[Slot](100)

    async def server() -> None:
        async for slot in receive:
            slot.result = slot.payload
            slot.done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        started = time.perf_counter()
        for i in range(n):
            slot = Slot(i)
            await send.send(slot)
            await slot.done.wait()
        elapsed = time.perf_counter() - started
        send.close()
    return n / elapsed


async def floor_reply_channel(n: int) -> float:
    """One server task; each request carries its own reply channel."""
    send, receive = trio.open_memory_channel[tuple[Any, trio.MemorySendChannel[Any]]](100)

    async def server() -> None:
        async for payload, reply in receive:
            await reply.send(payload)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        started = time.perf_counter()
        for i in range(n):
            reply_send, reply_receive = trio.open_memory_channel[Any](1)
            await send.send((i, reply_send))
            await reply_receive.receive()
        elapsed = time.perf_counter() - started
        send.close()
    return n / elapsed


async def router_round_trips(n: int) -> float:
    async with service_harness([Echo]) as router:
        started = time.perf_counter()
        for i in range(n):
            await router.invoke("bench.echo", i)
        return n / (time.perf_counter() - started)


def _config(root: Path) -> Config:
    return Config.from_mapping(
        {
            "paths": {"services": "services", "state": "state"},
            "server": {"port": 0},
            "deploy": {"step": f"{STEP_MS}ms"},
            "log": {"level": "warning"},
        },
        source=root / "hotwire.toml",
    )


def _version_source(version: int) -> str:
    return (
        "from daemon import Service\n"
        "class Versioned(Service):\n"
        "    name = 'bench.versioned'\n"
        "    async def handle(self):\n"
        f"        self.response.payload = {version}\n"
    )


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def deploy_latencies(root: Path) -> list[float]:
    """Seconds from os.replace of a changed file to its new version answering an invoke."""
    config = _config(root)
    path = config.paths.services / "versioned.py"
    config.paths.services.mkdir(parents=True)
    _replace(path, _version_source(0))
    samples = []
    async with trio.open_nursery() as nursery:
        daemon = await nursery.start(run_daemon, config)
        for version in range(1, DEPLOY_SAMPLES + 1):
            await trio.sleep(0.05)  # let the previous burst of events settle
            started = time.perf_counter()
            _replace(path, _version_source(version))
            while await daemon.router.invoke("bench.versioned") != version:
                await daemon.deployer.wait_rescanned()
            samples.append(time.perf_counter() - started)
        daemon.stop()
    return samples


async def awatch_latencies(root: Path) -> list[float]:
    """Seconds from os.replace to watchfiles.awatch yielding the change, same step."""
    root.mkdir(parents=True)
    path = root / "versioned.py"
    _replace(path, _version_source(0))
    samples = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        changes: trio.MemorySendChannel[float]
        changes, arrivals = trio.open_memory_channel[float](DEPLOY_SAMPLES)

        async def watch(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            # yield_on_timeout with a short timeout tells us when the watcher is up.
            task_status_sent = False
            async for batch in watchfiles.awatch(
                root, step=STEP_MS, stop_event=stop, rust_timeout=50, yield_on_timeout=True
            ):
                if not task_status_sent:
                    task_status.started()
                    task_status_sent = True
                if batch:
                    changes.send_nowait(time.perf_counter())

        await nursery.start(watch)
        for version in range(1, DEPLOY_SAMPLES + 1):
            await trio.sleep(0.05)
            started = time.perf_counter()
            _replace(path, _version_source(version))
            samples.append(await arrivals.receive() - started)
        stop.set()
    return samples


async def startup_with_many_services(root: Path, files: int = 100, per_file: int = 10) -> float:
    """Seconds from calling main to ready with files*per_file services to deploy."""
    config = _config(root)
    config.paths.services.mkdir(parents=True)
    for f in range(files):
        classes = "".join(
            f"class S{s}(Service):\n    name = 'bench.f{f}.s{s}'\n"
            "    async def handle(self):\n        self.response.payload = 1\n"
            for s in range(per_file)
        )
        (config.paths.services / f"file_{f}.py").write_text(
            "from daemon import Service\n" + classes
        )
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        daemon = await nursery.start(run_daemon, config)
        elapsed = time.perf_counter() - started
        assert len(daemon.router.names()) == files * per_file
        daemon.stop()
    return elapsed


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run_all() -> None:
    # Best of several rounds, each alternating floor and product, so that a
    # passing burst of load on the machine does not decide the ratio.
    event_floor = channel_floor = routed = 0.0
    for _ in range(ROUNDS):
        event_floor = max(event_floor, await floor_event_slot(ROUND_TRIPS))
        channel_floor = max(channel_floor, await floor_reply_channel(ROUND_TRIPS))
        routed = max(routed, await router_round_trips(ROUND_TRIPS))
    faster_floor = max(event_floor, channel_floor)
    with tempfile.TemporaryDirectory() as directory:
        deploys = await deploy_latencies(Path(directory) / "deploy")
        watches = await awatch_latencies(Path(directory) / "watch")
        startup = await startup_with_many_services(Path(directory) / "startup")
    print(f"floor  event+slot round trips/s:      {event_floor:10,.0f}")
    print(f"floor  reply-channel round trips/s:   {channel_floor:10,.0f}")
    print(f"router invoke round trips/s:          {routed:10,.0f}")
    print(
        f"deploy latency ms (n={len(deploys)}): median {statistics.median(deploys) * 1000:.1f}"
        f" p95 {_percentile(deploys, 0.95) * 1000:.1f}"
    )
    print(
        f"awatch latency ms (n={len(watches)}): median {statistics.median(watches) * 1000:.1f}"
        f" p95 {_percentile(watches, 0.95) * 1000:.1f}"
    )
    print(f"(a) invoke / faster raw floor: {routed / faster_floor:.2f}  (target >= 0.5)")
    print(
        f"(b) deploy median {statistics.median(deploys) * 1000:.1f} ms,"
        f" p95 {_percentile(deploys, 0.95) * 1000:.1f} ms (targets <= 50, <= 100);"
        f" deploy / awatch median: {statistics.median(deploys) / statistics.median(watches):.2f}"
    )
    print(f"(c) start-up with 1,000 services in 100 files: {startup * 1000:.0f} ms (target < 1000)")


def main() -> None:
    configure_logging("warning", "json")
    trio.run(run_all)


if __name__ == "__main__":
    main()
