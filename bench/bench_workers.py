"""Every core: a REST channel on ``workers = 2`` against one stock process (issue 8, b).

In one run: the stock hypercorn trio worker serving a raw ASGI app in one
process (the floor, measured as in bench_transport: server on core 0, wrk
``-t1 -c64`` on core 1, its best case), then Hotwire with two worker processes
on one port (SO_REUSEPORT) serving a REST channel to a trivial service under
wrk ``-t2 -c64``, nothing pinned (the workers need both cores; wrk shares
them). POST 1 KiB, 2 s warm-up then 10 s. Target: at least 3.3x the floor.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench._servers import HOTWIRE, serving
from bench.bench_dropbox import BASE_CONFIG
from bench.bench_transport import BODY, Result, measure, run_wrk

SERVICE = """
from daemon import Service

class Ack(Service):
    name = "bench.ack"
    async def handle(self):
        self.response.payload = {"ok": True, "size": self.request.http.body.size}
"""

CONFIG = """
[[channels.rest]]
path = "/api/ack"
service = "bench.ack"
methods = ["POST"]
"""

SECONDS, WARMUP, CONNECTIONS, THREADS = 10, 2, 64, 2


def hotwire_workers(root: Path, wrk: str) -> Result:
    (root / "services").mkdir()
    (root / "services" / "ack.py").write_text(SERVICE)

    def command(port: int) -> list[str]:
        base = BASE_CONFIG.format(port=port).replace("workers = 1", "workers = 2", 1)
        (root / "hotwire.toml").write_text(base + CONFIG)
        return [str(HOTWIRE), "run", "--config", str(root / "hotwire.toml")]

    with serving(command, "/admin/ready", root / "hotwire.log") as server:
        url = server.url + "/api/ack"
        run_wrk(wrk, url, WARMUP, CONNECTIONS, threads=THREADS, pin=False)
        return run_wrk(wrk, url, SECONDS, CONNECTIONS, threads=THREADS, pin=False)


def main() -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench_workers needs wrk (apt-get install wrk)")
    floor = measure("stock", SECONDS, WARMUP, CONNECTIONS)
    with tempfile.TemporaryDirectory(prefix="hotwire-bench-") as directory:
        workers = hotwire_workers(Path(directory), wrk)
    print(f"POST {len(BODY)} B, wrk -t{THREADS} -c{CONNECTIONS}, {SECONDS} s")
    print(
        f"floor  stock trio worker, raw ASGI, 1 process: {floor.requests_per_second:8.0f} req/s"
        f"  p99 {floor.p99_ms:.1f} ms"
    )
    print(
        f"hotwire REST channel, workers = 2:             {workers.requests_per_second:8.0f} req/s"
        f"  p99 {workers.p99_ms:.1f} ms  errors {workers.errors}"
    )
    print(
        f"(b) hotwire workers=2 / stock raw ASGI floor: "
        f"{workers.requests_per_second / floor.requests_per_second:.2f} (target >= 3.3)"
    )


if __name__ == "__main__":
    main()
