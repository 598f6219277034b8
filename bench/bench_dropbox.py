"""Dropbox benchmark (issue 4, point 4): a 1 GiB streamed upload, beside its floor.

curl POSTs a 1 GiB file of random bytes (``-T``, so ``Content-Length`` is
known) to the native streaming channel ``/api/upload/stream`` of a Hotwire
running as a real subprocess (``hotwire run``) with the embedded Dropbox
emulator; the repository's own services/ upload it over HTTPS in an upload
session of 8 MiB appends. Measured: the curl's wall time, the daemon's peak
RSS (``VmHWM``, MB of 10**6 bytes; target < 150) and a sha256 check of the
file that landed under ``<state>/dropbox``. A thread watches the channel's
spool file, so the wall time splits into receiving the body and uploading it
into the emulator.

The floor, in the same run: curl sends the same bytes to a raw ASGI app on
hypercorn's trio worker, in its own subprocess, that writes each received
chunk to a file with trio's async file API. Printed last: both wall times and
the ratio hotwire/floor.

The subprocess helpers here are shared with bench_ftp.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

UPLOAD_SIZE = 1024**3
PIECE = 16 * 1024 * 1024
READY_TIMEOUT = 30.0
ADMIN_TOKEN = "bench-admin-token"
REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / "services"
HOTWIRE = Path(sys.executable).parent / "hotwire"

#: The parts of conf/hotwire.toml every bench daemon has; paths into its temp dir.
BASE_CONFIG = f"""
[server]
host = "127.0.0.1"
port = {{port}}
grace_period = "5s"

[paths]
services = "services"
state = "state"

[log]
level = "warning"
format = "json"

[admin]
token = "{ADMIN_TOKEN}"
"""

UPLOAD_CONFIG = """
[[channels.rest]]
path = "/api/upload/stream"
service = "api.channel.rest.upload.stream"
methods = ["POST"]
max_body = "2GiB"

[cloud.dropbox."My Connection"]
user_agent = "hotwire-bench"
emulator = true

[emulators.dropbox]
enabled = true
"""


# --- subprocesses (shared with bench_ftp) ---


@dataclass
class Server:
    """A server subprocess: its process, base URL and log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def memory_mb(self, field: str = "VmHWM") -> float:
        """``VmHWM`` (peak RSS since start) or ``VmRSS`` from /proc, in MB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
        if match is None:  # a zombie has no memory figures
            raise RuntimeError(f"the server has exited:\n{self.log.read_text()[-2000:]}")
        return int(match.group(1)) * 1024 / 1e6


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200  # type: ignore[no-any-return]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _start(command: list[str], url: str, ready_path: str, log: Path) -> Server | None:
    """Start ``command``; None if it exits because its port was taken meanwhile."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while not _answers(url + ready_path):
            if process.poll() is not None and "Address already in use" in log.read_text():
                return None
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not become ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)  # a benchmark may poll: the daemon logs at "warning" only
    except BaseException:
        stop(process)
        raise
    return Server(process, url, log)


@contextlib.contextmanager
def serving(
    command_for: Callable[[int], list[str]], ready_path: str, log: Path
) -> Iterator[Server]:
    """Start ``command_for(port)`` on a free port, wait for ``GET ready_path`` to answer 200.

    Ports are picked before the server binds them, so one taken in between by
    another process (other benchmarks, tests) means a retry on another port.
    The server gets SIGTERM afterwards.
    """
    for _ in range(5):
        port = free_port()
        server = _start(command_for(port), f"http://127.0.0.1:{port}", ready_path, log)
        if server is not None:
            break
    else:
        raise RuntimeError(f"no free port found for {command_for(0)}")
    try:
        yield server
    finally:
        stop(server.process)


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def hotwire(root: Path, config: str) -> contextlib.AbstractContextManager[Server]:
    """A Hotwire subprocess in ``root`` with BASE_CONFIG + ``config``.

    Its services are the repository's, copied into ``root / "services"``
    unless the caller put (edited) copies there first.
    """
    copy_services(root)

    def command(port: int) -> list[str]:
        (root / "hotwire.toml").write_text(BASE_CONFIG.format(port=port) + config)
        return [str(HOTWIRE), "run", "--config", str(root / "hotwire.toml")]

    return serving(command, "/admin/ready", root / "hotwire.log")


def copy_services(root: Path) -> Path:
    """``root / "services"``: a copy of the repository's services, made once."""
    services = root / "services"
    if not services.exists():
        shutil.copytree(SERVICES, services, ignore=shutil.ignore_patterns("__pycache__"))
    return services


def sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


# --- the floor, served by ``python -m bench.bench_dropbox --floor PORT TARGET`` ---


async def _stream_floor(target: str, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raw ASGI: ``POST`` writes each received chunk to ``target`` with trio's async file."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return
    answer = b"{}"
    if scope["method"] == "POST":
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
        answer = json.dumps({"size": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def serve_floor(port: int, target: str) -> None:
    """Serve the floor app on hypercorn's trio worker until SIGTERM."""
    import hypercorn.config
    import hypercorn.trio

    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None

    async def sigterm() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                return

    app = functools.partial(_stream_floor, target)
    trio.run(functools.partial(hypercorn.trio.serve, app, config, shutdown_trigger=sigterm))


# --- the upload ---


@dataclass(frozen=True)
class Upload:
    """One curl upload: wall time, and when the server had the whole body (if watched)."""

    seconds: float
    body_received: float | None = None


def make_upload(path: Path) -> str:
    """Write UPLOAD_SIZE random bytes to ``path`` in PIECE-sized pieces; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(UPLOAD_SIZE // PIECE):
            data = os.urandom(PIECE)
            digest.update(data)
            file.write(data)
    return digest.hexdigest()


class SpoolWatcher:
    """Polls a spool directory from a thread: when a body file first holds the whole upload.

    Hotwire logs at "warning", so its timeline comes from the file system:
    the channel writes the body to ``<state>/http-spool/body-*`` as it arrives.
    """

    def __init__(self, directory: Path, size: int) -> None:
        self._directory = directory
        self._size = size
        self._stop = threading.Event()
        self.full_at: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> SpoolWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while self.full_at is None and not self._stop.wait(0.005):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self._directory):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_size >= self._size:
                            self.full_at = time.perf_counter()


def curl_upload(url: str, source: Path, spool: Path | None = None) -> tuple[Upload, Any]:
    """POST ``source`` to ``url`` with curl; the timing and the JSON answer."""
    os.sync()  # earlier steps' dirty pages must not be written back during this one
    with SpoolWatcher(spool, UPLOAD_SIZE) if spool else contextlib.nullcontext() as watcher:
        started = time.perf_counter()
        completed = subprocess.run(
            ["curl", "-sS", "-T", str(source), "-X", "POST", url], capture_output=True, text=True
        )
        elapsed = time.perf_counter() - started
    if completed.returncode != 0 or not completed.stdout.startswith("{"):
        raise RuntimeError(f"curl to {url} failed: {completed.stderr} {completed.stdout}")
    received = watcher.full_at - started if watcher and watcher.full_at else None
    return Upload(elapsed, received), json.loads(completed.stdout)


def run_all(root: Path) -> None:
    source = root / "upload.bin"
    source_sha256 = make_upload(source)

    state = root / "hotwire" / "state"
    with hotwire(root / "hotwire", UPLOAD_CONFIG) as server:
        rss_at_start = server.memory_mb("VmRSS")
        upload, answer = curl_upload(
            f"{server.url}/api/upload/stream?file_name=big.bin", source, state / "http-spool"
        )
        peak_rss = server.memory_mb("VmHWM")
    assert answer == {"path": "/big.bin", "size": UPLOAD_SIZE}, answer
    landed = state / "dropbox" / "big.bin"
    if sha256(landed) != source_sha256:
        raise RuntimeError(f"{landed} differs from what was sent")
    landed.unlink()

    target = root / "floor.bin"

    def floor_command(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.bench_dropbox", "--floor", str(port), str(target)]

    with serving(floor_command, "/ready", root / "floor.log") as floor:
        floor_upload, floor_answer = curl_upload(f"{floor.url}/upload", source)
        floor_rss = floor.memory_mb("VmHWM")
    assert floor_answer == {"size": UPLOAD_SIZE}, floor_answer
    if sha256(target) != source_sha256:
        raise RuntimeError(f"{target} differs from what was sent")

    rate = UPLOAD_SIZE / 1e6
    print(
        f"hotwire /api/upload/stream -> emulator: {upload.seconds:.2f} s"
        f" ({rate / upload.seconds:.0f} MB/s), sha256 ok;"
        f" RSS at start {rss_at_start:.1f} MB, peak {peak_rss:.1f} MB"
    )
    if upload.body_received is not None:
        print(
            f"  body received (spool file full) after {upload.body_received:.2f} s;"
            f" upload into the emulator (HTTPS, 8 MiB session appends)"
            f" {upload.seconds - upload.body_received:.2f} s"
        )
    print(
        f"floor raw ASGI stream to a trio file: {floor_upload.seconds:.2f} s"
        f" ({rate / floor_upload.seconds:.0f} MB/s), sha256 ok; peak RSS {floor_rss:.1f} MB"
    )
    print(
        f"1 GiB upload: hotwire {upload.seconds:.2f} s, floor {floor_upload.seconds:.2f} s,"
        f" ratio hotwire/floor {upload.seconds / floor_upload.seconds:.2f};"
        f" peak RSS {peak_rss:.0f} MB (target < 150)"
    )


def main() -> None:
    # TemporaryDirectory removes the 1 GiB files even when a step fails.
    with tempfile.TemporaryDirectory(prefix="hotwire-bench-dropbox-") as directory:
        run_all(Path(directory))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--floor"]:
        serve_floor(int(sys.argv[2]), sys.argv[3])
    else:
        main()
