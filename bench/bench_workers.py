"""Every core: a REST channel on ``workers = 2`` against one stock process (issue 8, b).

In one run: the stock hypercorn trio worker serving a raw ASGI app in one
process (the floor, measured as in bench_transport: server on core 0, wrk
``-t1 -c64`` on core 1, its best case), then Hotwire with two worker processes
on one port (SO_REUSEPORT) serving a REST channel to a trivial service under
wrk ``-t2 -c64``, nothing pinned (the workers need both cores; wrk shares
them). POST 1 KiB, 2 s warm-up then 10 s. Target: at least 3.3x the floor.

For scale, a reference that is not part of the ratio: the same raw ASGI app
on the fast transport in two SO_REUSEPORT processes, under the same load as
Hotwire (``-t2 -c64``, nothing pinned): what the workers' transport does
without the channel.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from bench._hotwire import ACK_SERVICE, hotwire
from bench._servers import scratch_dir
from bench._wrk import Result, run_wrk
from bench.bench_transport import BODY, measure, reuse_port_servers

CONFIG = """
[[channels.rest]]
path = "/api/ack"
service = "bench.ack"
methods = ["POST"]
"""

SECONDS, WARMUP, CONNECTIONS, THREADS, WORKERS = 10, 2, 64, 2, 2


def _two_core_load(url: str) -> Result:
    """Warm up, then measure ``url`` under wrk ``-t2 -c64``, unpinned."""
    load = functools.partial(
        run_wrk, url, connections=CONNECTIONS, threads=THREADS, body_size=len(BODY), strict=False
    )
    load(seconds=WARMUP)
    return load(seconds=SECONDS)


def hotwire_workers(root: Path) -> Result:
    services = {"ack.py": ACK_SERVICE}
    with hotwire(root / "hotwire", CONFIG, services=services, workers=WORKERS) as server:
        return _two_core_load(server.url + "/api/ack")


def raw_asgi_reuse_port(root: Path) -> Result:
    with reuse_port_servers(WORKERS, root) as url:
        return _two_core_load(url)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench_workers needs wrk (apt-get install wrk)")
    with scratch_dir("hotwire-bench-workers-") as root:
        floor = measure("stock", root, SECONDS, WARMUP, CONNECTIONS)
        workers = hotwire_workers(root)
        reference = raw_asgi_reuse_port(root)
    pinned = f"wrk -t1 -c{CONNECTIONS}, server on core 0, wrk on core 1"
    unpinned = f"wrk -t{THREADS} -c{CONNECTIONS}, unpinned"
    print(f"POST {len(BODY)} B, {SECONDS} s each")
    print(
        f"floor  stock trio worker, raw ASGI, 1 process:  {floor.requests_per_second:8.0f} req/s"
        f"  p99 {floor.p99_ms:.1f} ms  ({pinned})"
    )
    print(
        f"hotwire REST channel, workers = {WORKERS}:              "
        f"{workers.requests_per_second:8.0f} req/s  p99 {workers.p99_ms:.1f} ms"
        f"  errors {workers.errors}  ({unpinned})"
    )
    print(
        f"reference: fast transport, raw ASGI, {WORKERS} processes:"
        f" {reference.requests_per_second:7.0f} req/s  p99 {reference.p99_ms:.1f} ms"
        f"  ({unpinned}); hotwire / reference"
        f" {workers.requests_per_second / reference.requests_per_second:.2f}"
    )
    print(
        f"(b) hotwire workers=2 / stock raw ASGI floor: "
        f"{workers.requests_per_second / floor.requests_per_second:.2f} (target >= 3.3)"
    )


if __name__ == "__main__":
    main()
