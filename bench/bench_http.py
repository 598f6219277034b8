"""HTTP benchmarks (issue 3), each beside its floor in the same run.

(a) wrk POSTs 1 KiB bodies through a Hotwire REST channel to a service that
    answers ``{"ok": true, "size": N}``, and to a bare quart-trio app with the
    same route and answer (the floor): requests/s and p99 latency of each.
(b) curl uploads a 1 GiB file (``-T``, so ``Content-Length`` is known) to a
    Hotwire channel whose service keeps the body with ``save_to`` (a rename of
    the spool file), to one whose service copies it with ``chunks()`` into a
    trio async file, and to a bare raw-ASGI app that writes every received
    chunk to a trio async file (the floor): wall time of each curl, the
    server's peak RSS (``VmHWM``, in MB of 10**6 bytes) and a sha256 check of
    the stored file. Page-cache writes on a shared machine vary a lot from one
    upload to the next, so each server takes UPLOAD_ROUNDS uploads and the
    best time counts (as timeit does); every time is printed.

Every server runs in its own subprocess, one at a time, under the same load;
a fresh Hotwire per upload variant so that each peak RSS is its own. (a) also
runs Hotwire on hypercorn's stock trio worker (``fast_transport = false``), the
floor's transport, so that the channel's cost and the transport's gain can be
told apart. The floors are
served by this module (``--floor quart|stream PORT``) on hypercorn's trio
worker with Hotwire's hypercorn settings. On a machine with two or more cores
the server is pinned to core 0 and the client (wrk, curl) to core 1, so the
server's one core is what is measured.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import trio

from bench._hotwire import ACK_SERVICE, hotwire
from bench._servers import Server, pinned, scratch_dir, serving
from bench._upload import UPLOAD_SIZE, make_upload, sha256
from bench._wrk import Result, run_wrk

BODY_SIZE = 1024
WRK_CONNECTIONS = 32
WRK_SECONDS = 10
WARMUP_SECONDS = 2
UPLOAD_ROUNDS = 2

UPLOAD_SERVICES = '''
import trio
from daemon import Service


class Save(Service):
    """Keeps the body where the query says: a rename of the spool file."""

    name = "bench.save"

    async def handle(self):
        body = self.request.http.body
        body.save_to(self.request.http.params.target)
        self.response.payload = {"ok": True, "size": body.size}


class Copy(Service):
    """Copies the body chunk by chunk into a trio async file."""

    name = "bench.copy"

    async def handle(self):
        body = self.request.http.body
        async with await trio.open_file(self.request.http.params.target, "wb") as file:
            async for chunk in body.chunks():
                await file.write(chunk)
        self.response.payload = {"ok": True, "size": body.size}
'''

SERVICES = {"bench_ack.py": ACK_SERVICE, "bench_upload.py": UPLOAD_SERVICES}

CHANNELS = """
[[channels.rest]]
path = "/ack"
service = "bench.ack"

[[channels.rest]]
path = "/upload/save"
service = "bench.save"
max_body = "2GiB"

[[channels.rest]]
path = "/upload/copy"
service = "bench.copy"
max_body = "2GiB"
"""

# --- the floors, served in a subprocess by ``python -m bench.bench_http --floor ...`` ---


def _quart_floor() -> Any:
    """The bare quart-trio app: the same route and answer as Hotwire's ``/ack`` channel."""
    from quart import request
    from quart_trio import QuartTrio

    app = QuartTrio(__name__)

    @app.post("/ack")
    async def ack() -> dict[str, Any]:
        return {"ok": True, "size": len(await request.get_data())}

    @app.get("/ready")
    async def ready() -> str:
        return "ready"

    return app


async def _stream_floor(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raw ASGI: ``POST /upload?target=PATH`` writes each received chunk to a trio file."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return
    status, answer = 404, b"{}"
    if scope["path"] == "/ready":
        status = 200
    elif scope["path"] == "/upload" and scope["method"] == "POST":
        target = parse_qs(scope["query_string"].decode())["target"][0]
        size = 0
        async with await trio.open_file(target, "wb") as file:
            while True:
                event = await receive()
                if event["type"] == "http.disconnect":
                    return
                if chunk := event.get("body", b""):
                    await file.write(chunk)
                    size += len(chunk)
                if not event.get("more_body", False):
                    break
        status, answer = 200, json.dumps({"ok": True, "size": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def serve_floor(kind: str, port: int) -> None:
    """Serve a floor app on hypercorn's trio worker with Hotwire's hypercorn settings.

    The settings are those of ``daemon.http._server.hypercorn_config``, repeated
    here so that the floor does not import the daemon: its RSS is then the floor's.
    """
    import hypercorn.config
    import hypercorn.trio

    app: Any = _quart_floor() if kind == "quart" else _stream_floor
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 5.0
    config.accesslog = None

    async def sigterm() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                return

    trio.run(functools.partial(hypercorn.trio.serve, app, config, shutdown_trigger=sigterm))


# --- driving servers and clients ---


def floor_server(
    kind: str, root: Path, *, core: int | None
) -> contextlib.AbstractContextManager[Server]:
    """The ``quart`` or ``stream`` floor app in a subprocess; ``core`` pins it (see `pinned`)."""

    def command_for(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.bench_http", "--floor", kind, str(port)]

    return serving(command_for, "/ready", root / f"floor-{kind}.log", core=core)


# --- (a) 1 KiB POSTs under wrk ---


def _post_load(url: str) -> Result:
    """POST 1 KiB bodies to ``url``: check one answer, warm up, then measure."""
    request = urllib.request.Request(url, data=b"x" * BODY_SIZE, method="POST")
    request.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.load(response)
    assert answer == {"ok": True, "size": BODY_SIZE}, answer
    load = functools.partial(run_wrk, url, connections=WRK_CONNECTIONS, body_size=BODY_SIZE, core=1)
    load(seconds=WARMUP_SECONDS)
    return load(seconds=WRK_SECONDS)


# --- (b) a 1 GiB upload ---


@dataclass(frozen=True)
class UploadResult:
    times: list[float]
    rss_at_start_mb: float
    peak_rss_mb: float

    @property
    def seconds(self) -> float:
        """The best time."""
        return min(self.times)


def _upload(server: Server, path: str, source: Path, source_sha256: str, target: Path) -> float:
    """Upload ``source`` with curl, check the answer and the stored file; the wall time."""
    url = f"{server.url}{path}?target={quote(str(target))}"
    os.sync()  # earlier steps' dirty pages must not be written back during this one
    started = time.perf_counter()
    completed = subprocess.run(
        pinned(1, ["curl", "-sS", "--fail-with-body", "-T", str(source), "-X", "POST", url]),
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"curl to {url} failed: {completed.stderr} {completed.stdout}")
    answer = json.loads(completed.stdout)
    assert answer == {"ok": True, "size": UPLOAD_SIZE}, answer
    if sha256(target) != source_sha256:
        raise RuntimeError(f"the file stored through {url} differs from what was sent")
    target.unlink()
    return elapsed


def _measured_uploads(
    server: Server, path: str, source: Path, source_sha256: str, target: Path
) -> UploadResult:
    at_start = server.memory_mb("VmRSS")
    times = [_upload(server, path, source, source_sha256, target) for _ in range(UPLOAD_ROUNDS)]
    return UploadResult(times, at_start, server.memory_mb("VmHWM"))


def run_all(root: Path) -> None:
    posts: dict[str, Result] = {}
    with hotwire(root / "hotwire-post", CHANNELS, services=SERVICES, core=0) as server:
        posts["hotwire channel"] = _post_load(server.url + "/ack")
    with hotwire(
        root / "hotwire-post-stock",
        CHANNELS,
        services=SERVICES,
        server="fast_transport = false",
        core=0,
    ) as server:
        posts["hotwire, stock worker"] = _post_load(server.url + "/ack")
    with floor_server("quart", root, core=0) as server:
        posts["floor quart-trio"] = _post_load(server.url + "/ack")

    source = root / "upload.bin"
    source_sha256 = make_upload(source)
    target = root / "stored.bin"  # same filesystem as Hotwire's spool: save_to renames
    uploads: dict[str, UploadResult] = {}
    for variant in ("save", "copy"):
        with hotwire(root / f"hotwire-{variant}", CHANNELS, services=SERVICES, core=0) as server:
            uploads[variant] = _measured_uploads(
                server, f"/upload/{variant}", source, source_sha256, target
            )
    with floor_server("stream", root, core=0) as server:
        uploads["floor"] = _measured_uploads(server, "/upload", source, source_sha256, target)

    floor_rate = posts["floor quart-trio"].requests_per_second
    for label, load in posts.items():
        print(
            f"{label:22} POST 1KiB: {load.requests_per_second:8,.0f} req/s,"
            f" p99 {load.p99_ms:6.2f} ms, / floor {load.requests_per_second / floor_rate:.2f}"
        )
    labels = {
        "save": "hotwire save_to (rename)",
        "copy": "hotwire chunks() copy",
        "floor": "floor raw ASGI stream",
    }
    for variant, upload in uploads.items():
        times = ", ".join(f"{seconds:.2f}" for seconds in upload.times)
        print(
            f"{labels[variant]:24} 1 GiB upload: {times} s, best"
            f" {UPLOAD_SIZE / upload.seconds / 1e6:4.0f} MB/s;"
            f" RSS at start {upload.rss_at_start_mb:.1f} MB, peak {upload.peak_rss_mb:.1f} MB"
        )
    hot, bare = posts["hotwire channel"], posts["floor quart-trio"]
    print(
        f"(a) channel POST 1KiB: hotwire {hot.requests_per_second:,.0f} req/s"
        f" p99 {hot.p99_ms:.2f} ms; bare quart-trio {bare.requests_per_second:,.0f}"
        f" req/s p99 {bare.p99_ms:.2f} ms;"
        f" ratio {hot.requests_per_second / bare.requests_per_second:.2f} (target >= 0.8)"
    )
    saved, copied, floor = uploads["save"], uploads["copy"], uploads["floor"]
    print(
        f"(b) 1 GiB upload: hotwire rename {saved.seconds:.2f} s, copy {copied.seconds:.2f} s;"
        f" bare {floor.seconds:.2f} s; ratios {saved.seconds / floor.seconds:.2f},"
        f" {copied.seconds / floor.seconds:.2f} (target <= 1.5);"
        f" peak RSS {saved.peak_rss_mb:.0f} MB / {copied.peak_rss_mb:.0f} MB (target < 100)"
    )


def main() -> None:
    with scratch_dir("hotwire-bench-http-") as root:  # removes the 1 GiB files however it ends
        run_all(root)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--floor"]:
        serve_floor(sys.argv[2], int(sys.argv[3]))
    else:
        main()
