"""Benchmark: hypercorn's stock Trio worker against Hotwire's fast transport.

Run ``.venv/bin/python -m bench transport`` (or call `main`). One run
serves the same raw ASGI app -- it reads a ~1 KiB POST body and answers a small
JSON document -- first on ``hypercorn.trio`` and then on
``daemon.http._fast_transport``, each in its own subprocess, one at a time and
under the same load, and prints requests/s and p99 latency for each and the
ratio fast/stock as the last line.

The load comes from ``wrk`` (``apt-get install wrk``) with a Lua script for the
POST body: a 2 s warm-up, then 10 s at ``-t1 -c32``. Without wrk, a small
keep-alive load generator in this file (a thread per connection, blocking
sockets) stands in; it is slower than wrk, so its absolute figures are lower,
but both transports get the same one. On a machine with two or more cores the
server is pinned to core 0 and the load generator to core 1, so that the
server's one core is what is measured.

`reuse_port_servers` serves the same app on the fast transport in several
processes on one port, as Hotwire's workers do (bench_workers' reference).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from bench._servers import Server, scratch_dir, serving, started
from bench._wrk import Result, run_wrk

BODY = b"x" * 1024
RESPONSE = json.dumps({"ok": True, "received": len(BODY)}).encode()
TRANSPORTS = ("stock", "fast")
BACKLOG = 1024


# --------------------------------------------------------------------------- server side


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """A raw ASGI app: read the whole request body, answer a small JSON document."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(RESPONSE)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": RESPONSE})


def run_server(transport: str, port: int, fd: int | None) -> None:
    """Serve `app` on 127.0.0.1:``port``, or on the listening socket ``fd``; stop on SIGTERM."""
    import trio
    from hypercorn.config import Config, Sockets

    from daemon.http._fast_transport import select_serve

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.backlog = BACKLOG
    sockets = None if fd is None else Sockets([], [socket.socket(fileno=fd)], [])

    async def shutdown_on_sigterm() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                return

    serve = select_serve(transport == "fast")
    trio.run(lambda: serve(app, config, sockets=sockets, shutdown_trigger=shutdown_on_sigterm))


def _server_command(transport: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "bench.bench_transport", "--serve", transport, *options]


@contextlib.contextmanager
def reuse_port_servers(count: int, root: Path) -> Iterator[str]:
    """`app` on the fast transport in ``count`` processes sharing one port; its URL.

    Each process gets its own SO_REUSEPORT socket, as each Hotwire worker binds
    one (``daemon.http._server.reuse_port_socket``). All are bound and listening
    before any process starts, so a connection the kernel hands to a process
    still starting waits in that socket's backlog. Nothing is pinned.
    """
    from daemon.http._server import reuse_port_socket

    with contextlib.ExitStack() as stack:
        first = stack.enter_context(reuse_port_socket("127.0.0.1", 0))
        port = first.getsockname()[1]
        listeners = [first]
        listeners += [
            stack.enter_context(reuse_port_socket("127.0.0.1", port)) for _ in range(count - 1)
        ]
        servers: list[Server] = []
        for index, listener in enumerate(listeners):
            listener.listen(BACKLOG)
            fd = listener.fileno()
            command = _server_command("fast", "--fd", str(fd))
            url = f"http://127.0.0.1:{port}"
            log = root / f"reuse-port-{index}.log"
            servers.append(stack.enter_context(started(command, url, "/", log, pass_fds=(fd,))))
        yield url
        if any(server.process.poll() is not None for server in servers):
            raise RuntimeError(f"a reuse-port server exited during the run; logs in {root}")


def run_python_load(url: str, seconds: float, connections: int) -> Result:
    """The fallback load: ``connections`` keep-alive clients, one thread each."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(BODY)}\r\n\r\n".encode() + BODY
    )
    deadline = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections

    def client(index: int) -> None:
        with socket.create_connection((host, int(port))) as sock:
            buffer = b""
            while time.monotonic() < deadline:
                started = time.perf_counter()
                sock.sendall(request)
                while b"\r\n\r\n" not in buffer:
                    buffer += sock.recv(65536)
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                buffer = buffer[length:]
                if not head.startswith(b"HTTP/1.1 200"):
                    errors[index] += 1
                latencies[index].append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    merged = sorted(latency for per_client in latencies for latency in per_client)
    p99 = merged[int(len(merged) * 0.99)] if merged else 0.0
    return Result(len(merged) / elapsed, p99 * 1e3, sum(errors), len(merged))


def measure(transport: str, root: Path, seconds: float, warmup: float, connections: int) -> Result:
    """Start one server subprocess on core 0, warm it up, measure it from core 1, stop it."""

    def command_for(port: int) -> list[str]:
        return _server_command(transport, "--port", str(port))

    with serving(command_for, "/", root / f"{transport}.log", core=0) as server:
        if shutil.which("wrk") is None:
            run_python_load(server.url, warmup, connections)
            return run_python_load(server.url, seconds, connections)
        load = functools.partial(
            run_wrk, server.url, connections=connections, body_size=len(BODY), core=1, strict=False
        )
        load(seconds=warmup)
        return load(seconds=seconds)


def main(argv: list[str] | None = None) -> float:
    """Run the comparison, print the figures; return the ratio fast/stock.

    ``argv`` are the options (none: the defaults, as ``python -m bench`` runs it).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve", choices=TRANSPORTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv or [])
    if args.serve is not None:
        run_server(args.serve, args.port, args.fd)
        return 0.0

    load = "wrk -t1" if shutil.which("wrk") else "python threads (wrk not found)"
    print(f"load: {load}, {args.connections} connections, {args.duration:g} s, POST {len(BODY)} B")
    with scratch_dir("hotwire-bench-transport-") as root:
        results = {
            transport: measure(transport, root, args.duration, args.warmup, args.connections)
            for transport in TRANSPORTS
        }
    for transport, result in results.items():
        print(
            f"{transport:>5}: {result.requests_per_second:9.1f} req/s"
            f"  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
        )
    ratio = results["fast"].requests_per_second / results["stock"].requests_per_second
    print(f"ratio fast/stock: {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main(sys.argv[1:])
