"""Durable outbox benchmark (issue 6, point 4): acknowledged durable uploads beside sync.

One Hotwire runs as a real subprocess (``hotwire run``) with one small async
service behind two POST channels: ``/api/sync`` (``delivery = "sync"``: the
service runs inline and its JSON is the answer) and ``/api/durable``
(``delivery = "durable"``: 202 with a message id once the body is on disk and
the row committed; the outbox calls the service later). wrk POSTs 10 KiB
bodies with ``-t1 -c16``: a warm-up, then the measured run, first against the
sync channel, then the durable one, on the same daemon (sync first, so the
outbox's delivery backlog cannot slow the sync run). Afterwards the admin API
must show every message delivered: nothing pending or delivering, none dead.

Each durable acknowledgement costs an fsync of the body file, a rename, an
fsync of the spool directory and a SQLite commit in WAL mode with
``synchronous=FULL`` (one more fsync), and the outbox's deliveries commit to
the same database meanwhile; so the ratio durable/sync mostly measures the
disk's fsync rate. As context, measured on the same filesystem: the raw rate
of write(10 KiB)+fsync in one thread, and the rate of that acknowledgement
sequence done one at a time without Hotwire.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._hotwire import ACK_SERVICE, ADMIN_TOKEN, hotwire
from bench._servers import Server, scratch_dir
from bench._wrk import Result, run_wrk

BODY_SIZE = 10 * 1024
WRK_CONNECTIONS = 16
WRK_SECONDS = 10
WARMUP_SECONDS = 2
FLOOR_SECONDS = 2.0
DRAIN_TIMEOUT = 60.0

CHANNELS = """
[[channels.rest]]
path = "/api/sync"
service = "bench.ack"
methods = ["POST"]

[[channels.rest]]
path = "/api/durable"
service = "bench.ack"
methods = ["POST"]
delivery = "durable"
"""

# --- the disk's own rates, as context ---


def _rate(step: Callable[[int], None]) -> float:
    """Calls of ``step(i)`` per second over FLOOR_SECONDS."""
    count = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < FLOOR_SECONDS:
        step(count)
        count += 1
    return count / elapsed


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def raw_fsync_rate(root: Path) -> float:
    """write(BODY_SIZE bytes) + fsync per second, appending to one file in one thread."""
    data = b"x" * BODY_SIZE
    fd = os.open(root / "fsync.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write_and_sync(_: int) -> None:
        os.write(fd, data)
        os.fsync(fd)

    try:
        return _rate(write_and_sync)
    finally:
        os.close(fd)


def serial_ack_rate(root: Path) -> float:
    """The durable acknowledgement's disk work, one message at a time, without Hotwire.

    Write the body and fsync it, rename it into ``bodies/``, fsync ``bodies/``,
    insert its row in a WAL database with ``synchronous=FULL``.
    """
    incoming, bodies = root / "incoming", root / "bodies"
    incoming.mkdir()
    bodies.mkdir()
    data = b"x" * BODY_SIZE
    database = sqlite3.connect(root / "acks.sqlite", isolation_level=None)
    try:
        database.execute("PRAGMA journal_mode=WAL")
        database.execute("PRAGMA synchronous=FULL")
        database.execute("CREATE TABLE acks (id TEXT PRIMARY KEY, size INTEGER)")

        def acknowledge(i: int) -> None:
            temporary = incoming / f"{i}.tmp"
            with temporary.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.rename(temporary, bodies / str(i))
            _fsync_directory(bodies)
            database.execute("INSERT INTO acks VALUES (?, ?)", (str(i), BODY_SIZE))

        return _rate(acknowledge)
    finally:
        database.close()


# --- wrk against the daemon ---


def _post(url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=b"x" * BODY_SIZE, method="POST")
    request.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.load(response)


def post_load(url: str) -> tuple[Result, int]:
    """Warm up, then measure; also the answers wrk counted in both runs.

    Any failed request (socket error, status 400 or more) raises RuntimeError.
    """
    load = functools.partial(run_wrk, url, connections=WRK_CONNECTIONS, body_size=BODY_SIZE)
    warm_up = load(seconds=WARMUP_SECONDS)
    measured = load(seconds=WRK_SECONDS)
    return measured, warm_up.requests + measured.requests


# --- the outbox afterwards ---


def outbox_counts(server: Server) -> dict[str, int]:
    request = urllib.request.Request(f"{server.url}/admin/outbox")
    request.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    with urllib.request.urlopen(request, timeout=5) as response:
        counts: dict[str, int] = json.load(response)["counts"]
        return counts


def drained(server: Server) -> tuple[dict[str, int], float]:
    """The outbox's counts once nothing is pending or delivering, and how long that took."""
    started = time.perf_counter()
    while True:
        counts = outbox_counts(server)
        waited = time.perf_counter() - started
        if counts["pending"] + counts["delivering"] == 0:
            return counts, waited
        if waited > DRAIN_TIMEOUT:
            raise RuntimeError(f"the outbox did not drain within {DRAIN_TIMEOUT} s: {counts}")
        time.sleep(0.1)  # the admin API has no "drained" event to wait for


def run_all(root: Path) -> None:
    floors = root / "floors"
    floors.mkdir()
    fsync_rate = raw_fsync_rate(floors)
    ack_rate = serial_ack_rate(floors)

    with hotwire(root / "hotwire", CHANNELS, services={"bench_ack.py": ACK_SERVICE}) as server:
        status, answer = _post(f"{server.url}/api/sync")
        assert (status, answer) == (200, {"ok": True, "size": BODY_SIZE}), (status, answer)
        status, answer = _post(f"{server.url}/api/durable")
        assert status == 202 and "message_id" in answer, (status, answer)
        sync, _ = post_load(f"{server.url}/api/sync")
        durable, durable_answers = post_load(f"{server.url}/api/durable")
        counts, drain_seconds = drained(server)
    accepted = durable_answers + 1  # the check above; wrk may not count its last answers

    print(f"raw write(10KiB)+fsync, one thread:          {fsync_rate:8,.0f} /s")
    print(f"serial ack (fsync, rename, fsync dir, commit): {ack_rate:6,.0f} /s")
    print(
        f"outbox after the run: delivered {counts['delivered']:,} (wrk counted"
        f" {accepted:,} acknowledged), pending {counts['pending']},"
        f" delivering {counts['delivering']}, dead {counts['dead']};"
        f" drained {drain_seconds:.1f} s after the load"
    )
    for label, load in (("sync   ", sync), ("durable", durable)):
        print(
            f"{label} POST 10KiB -t1 -c{WRK_CONNECTIONS}: {load.requests_per_second:8,.0f} req/s,"
            f" p99 {load.p99_ms:7.2f} ms"
        )
    print(
        f"durable/sync {durable.requests_per_second / sync.requests_per_second:.2f};"
        f" durable / raw fsync rate {durable.requests_per_second / fsync_rate:.2f};"
        f" durable / serial ack {durable.requests_per_second / ack_rate:.2f}"
    )
    if counts["dead"] or counts["delivered"] < accepted:
        raise RuntimeError(f"the outbox lost or killed messages: {counts}, {accepted} accepted")


def main() -> None:
    with scratch_dir("hotwire-bench-outbox-") as root:
        run_all(root)


if __name__ == "__main__":
    main()
