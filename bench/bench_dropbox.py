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
hypercorn's trio worker (bench_http's), in its own subprocess, that writes
each received chunk to a file with trio's async file API; the same thread
watches that file, so both uploads share the machine with it. Printed last:
both wall times and the ratio hotwire/floor.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench._hotwire import hotwire
from bench._servers import scratch_dir
from bench._upload import UPLOAD_SIZE, make_upload, sha256
from bench.bench_http import floor_server

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


@dataclass(frozen=True)
class Upload:
    """One curl upload: wall time, and when the watched file held the whole body (if seen)."""

    seconds: float
    body_received: float | None = None


class SpoolWatcher:
    """Polls a directory from a thread: when a file in it first holds the whole upload.

    Hotwire logs at "warning", so its timeline comes from the file system:
    the channel writes the body to ``<state>/http-spool/body-*`` as it arrives.
    The floor's upload is watched the same way, so that both share the machine
    with this thread.
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


def curl_upload(url: str, source: Path, spool: Path) -> tuple[Upload, Any]:
    """POST ``source`` to ``url`` with curl, watching ``spool``; the timing and the JSON answer."""
    os.sync()  # earlier steps' dirty pages must not be written back during this one
    with SpoolWatcher(spool, UPLOAD_SIZE) as watcher:
        started = time.perf_counter()
        completed = subprocess.run(
            ["curl", "-sS", "-T", str(source), "-X", "POST", url], capture_output=True, text=True
        )
        elapsed = time.perf_counter() - started
    if completed.returncode != 0 or not completed.stdout.startswith("{"):
        raise RuntimeError(f"curl to {url} failed: {completed.stderr} {completed.stdout}")
    received = watcher.full_at - started if watcher.full_at else None
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

    target = root / "floor" / "floor.bin"
    target.parent.mkdir()
    with floor_server("stream", root, core=None) as floor:
        url = f"{floor.url}/upload?target={quote(str(target))}"
        floor_upload, floor_answer = curl_upload(url, source, target.parent)
        floor_rss = floor.memory_mb("VmHWM")
    assert floor_answer == {"ok": True, "size": UPLOAD_SIZE}, floor_answer
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
    with scratch_dir("hotwire-bench-dropbox-") as root:  # removes the 1 GiB files however it ends
        run_all(root)


if __name__ == "__main__":
    main()
