"""FTP benchmark (issue 5, point 5): 1,000 files of 10 KiB moved off an FTP server.

One FTP server, in its own subprocess (the pyftpdlib-based FtpEmulator,
``python -m bench.bench_ftp --ftp ROOT``), serves the same files (made afresh
before each run) to three movers:

(a) Hotwire's native poller (``api.channel.scheduler.upload.stream`` from
    services/api_ftp_streaming.py, payload ``{"settle": false}`` so one run
    takes everything), invoked through the admin API of a ``hotwire run``
    subprocess: every file crosses FTP, then HTTPS into a Dropbox emulator.
    The headline: the emulator runs on its own (``hotwire emulator dropbox``,
    another process), the connection pointed at it by api_host, content_host,
    ca_certs and token as at a real Dropbox. Also measured: the emulator
    embedded in the daemon (``emulator = true``), where its server side shares
    the daemon's interpreter and GIL;
(b) the floor: one ftplib session (NLST, then RETR each into a local
    directory, DELE each);
(c) ``rclone move`` to a local directory, if rclone is installed.

Each run must leave the FTP directory empty and all 1,000 files, whole, at
the destination. Printed last: the wall times and the ratios.

Knobs (the defaults are the product's): PARALLEL is written into the bench's
copy of the poller service, FTP_POOL_SIZE and DROPBOX_CONCURRENCY into its
config.
"""

from __future__ import annotations

import contextlib
import ftplib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

from bench._hotwire import ADMIN_TOKEN, copy_services, hotwire
from bench._servers import HOTWIRE, READY_TIMEOUT, REPO, Server, scratch_dir, stop

FILES = 1000
FILE_SIZE = 10 * 1024
FTP_USER = "hotwire"
FTP_PASSWORD = "bench-ftp-password"
DROPBOX_TOKEN = "bench-dropbox-token"
SERVICE = "api.channel.scheduler.upload.stream"
#: The poller's files in flight at once (services/api_ftp_streaming.py: PARALLEL).
PARALLEL = 8
#: ``[outgoing.ftp] pool_size`` (default 4) and ``[cloud.dropbox] concurrency`` (default 4).
FTP_POOL_SIZE = 4
DROPBOX_CONCURRENCY = 4


@dataclass(frozen=True)
class Dropbox:
    """A standalone Dropbox emulator: its hosts, CA and folder."""

    api_host: str
    content_host: str
    ca_path: str
    root: Path


def config(ftp_port: int, dropbox: Dropbox | None) -> str:
    """Connections to the FTP server, and to ``dropbox`` (None: the embedded emulator)."""
    if dropbox is None:
        box = "emulator = true\n\n[emulators.dropbox]\nenabled = true"
    else:
        box = (
            f'token = "{DROPBOX_TOKEN}"\napi_host = "{dropbox.api_host}"\n'
            f'content_host = "{dropbox.content_host}"\nca_certs = "{dropbox.ca_path}"'
        )
    return f"""
[outgoing.ftp."My FTP Connection"]
host = "127.0.0.1"
port = {ftp_port}
user = "{FTP_USER}"
password = "{FTP_PASSWORD}"
pool_size = {FTP_POOL_SIZE}

[cloud.dropbox."My Connection"]
user_agent = "hotwire-bench"
concurrency = {DROPBOX_CONCURRENCY}
{box}
"""


def place_files(directory: Path) -> None:
    """FILES files of FILE_SIZE bytes, the same names and bytes every time."""
    directory.mkdir(parents=True, exist_ok=True)
    generator = random.Random(5)
    for index in range(FILES):
        (directory / f"file-{index:04}.bin").write_bytes(generator.randbytes(FILE_SIZE))


def check_moved(source: Path, destination: Path) -> None:
    """The FTP directory is empty and every file arrived whole."""
    left = list(source.iterdir())
    arrived = [p for p in destination.iterdir() if p.is_file()]
    if left or len(arrived) != FILES or any(p.stat().st_size != FILE_SIZE for p in arrived):
        raise RuntimeError(
            f"{len(left)} files left on the FTP server, {len(arrived)} at {destination}"
        )


# --- the peers: an FTP server (``python -m bench.bench_ftp --ftp ROOT``), a Dropbox emulator ---


def serve_ftp(root: Path) -> None:
    """FtpEmulator on ``root`` on a free port; prints the port, serves until SIGTERM."""
    from daemon._logging import configure_logging
    from daemon.emulators import FtpEmulator

    configure_logging("warning", "json", stream=sys.stderr)  # stdout is for the port

    async def main() -> None:
        ftp = FtpEmulator(root, user=FTP_USER, password=FTP_PASSWORD)
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(ftp.run)
            print(handle.port, flush=True)
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()

    trio.run(main)


@contextlib.contextmanager
def ftp_server(root: Path) -> Iterator[int]:
    """The FTP server subprocess serving ``root``; its port. Stopped afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_ftp", "--ftp", str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the FTP server did not start (printed {line!r})")
        yield int(line)
    finally:
        stop(process)


def _listening(log: Path) -> dict[str, str] | None:
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"dropbox_emulator_listening"' in line:
            event: dict[str, str] = json.loads(line)
            return event
    return None


@contextlib.contextmanager
def dropbox_emulator(root: Path) -> Iterator[Dropbox]:
    """``hotwire emulator dropbox`` in ``root``, on two free ports; stopped afterwards."""
    root.mkdir(parents=True)
    configuration = root / "emulator.toml"
    configuration.write_text(
        '[paths]\nservices = "services"\nstate = "state"\n\n'
        '[log]\nlevel = "info"\nformat = "json"\n'
    )
    log = root / "emulator.log"
    command = [str(HOTWIRE), "emulator", "dropbox", "--config", str(configuration)]
    command += ["--root", str(root / "dropbox"), "--port", "0", "--token", DROPBOX_TOKEN]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while (event := _listening(log)) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Dropbox emulator did not start:\n{log.read_text()[-2000:]}"
                )
            time.sleep(0.05)  # its only sign of readiness is the log line
        yield Dropbox(event["api_host"], event["content_host"], event["ca_path"], root / "dropbox")
    finally:
        stop(process)


# --- (a) Hotwire's poller ---


def _set_parallel(services: Path) -> None:
    poller = services / "api_ftp_streaming.py"
    source, count = re.subn(
        r"^PARALLEL = \d+$", f"PARALLEL = {PARALLEL}", poller.read_text(), flags=re.MULTILINE
    )
    if count != 1:
        raise RuntimeError(f"no PARALLEL constant in {poller}")
    poller.write_text(source)


def _invoke(server: Server, payload: dict[str, object]) -> dict[str, int]:
    """POST /admin/services/SERVICE/invoke; the service's answer."""
    request = urllib.request.Request(
        f"{server.url}/admin/services/{SERVICE}/invoke",
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        answer: dict[str, int] = json.load(response)["response"]
        return answer


def run_hotwire(root: Path, ftp_port: int, ftp_root: Path, dropbox: Dropbox | None) -> float:
    """Seconds for one poller run moving every file from ``ftp_root`` into Dropbox.

    The daemon is started, and the files made, before the clock starts.
    """
    _set_parallel(copy_services(root))
    with hotwire(root, config(ftp_port, dropbox)) as server:
        place_files(ftp_root)
        started = time.perf_counter()
        answer = _invoke(server, {"settle": False})
        elapsed = time.perf_counter() - started
    if (answer["moved"], answer["failed"]) != (FILES, 0):
        raise RuntimeError(f"the poller answered {answer}")
    check_moved(ftp_root, dropbox.root if dropbox else root / "state" / "dropbox")
    return elapsed


# --- (b) the ftplib floor ---


def run_ftplib(port: int, ftp_root: Path, destination: Path) -> float:
    place_files(ftp_root)
    destination.mkdir()
    started = time.perf_counter()
    with ftplib.FTP() as ftp:
        ftp.connect("127.0.0.1", port)
        ftp.login(FTP_USER, FTP_PASSWORD)
        for name in ftp.nlst():
            with (destination / name).open("wb") as file:
                ftp.retrbinary(f"RETR {name}", file.write)
            ftp.delete(name)
    elapsed = time.perf_counter() - started
    check_moved(ftp_root, destination)
    return elapsed


# --- (c) rclone ---


def run_rclone(rclone: str, port: int, ftp_root: Path, destination: Path) -> float:
    password = subprocess.run(
        [rclone, "obscure", FTP_PASSWORD], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {
        **os.environ,
        "RCLONE_CONFIG": os.devnull,  # no user configuration: the remote is all env
        "RCLONE_CONFIG_SRC_TYPE": "ftp",
        "RCLONE_CONFIG_SRC_HOST": "127.0.0.1",
        "RCLONE_CONFIG_SRC_PORT": str(port),
        "RCLONE_CONFIG_SRC_USER": FTP_USER,
        "RCLONE_CONFIG_SRC_PASS": password,
    }
    place_files(ftp_root)
    started = time.perf_counter()
    completed = subprocess.run(
        [rclone, "move", "src:/", str(destination)], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"rclone move failed: {completed.stderr}")
    check_moved(ftp_root, destination)
    return elapsed


def run_all(root: Path) -> None:
    ftp_root = root / "ftp"
    rclone = shutil.which("rclone")
    rclone_seconds = None
    with ftp_server(ftp_root) as port:
        with dropbox_emulator(root / "emulator") as dropbox:
            apart = run_hotwire(root / "apart", port, ftp_root, dropbox)
        embedded = run_hotwire(root / "embedded", port, ftp_root, None)
        floor = run_ftplib(port, ftp_root, root / "ftplib")
        if rclone is not None:
            rclone_seconds = run_rclone(rclone, port, ftp_root, root / "rclone")

    knobs = f"PARALLEL={PARALLEL}, pool_size={FTP_POOL_SIZE}, concurrency={DROPBOX_CONCURRENCY}"
    print(f"hotwire poller -> Dropbox emulator in its own process ({knobs}): {apart:.2f} s")
    print(f"hotwire poller -> Dropbox emulator embedded in the daemon:           {embedded:.2f} s")
    print(f"ftplib, one session -> local directory:                               {floor:.2f} s")
    if rclone_seconds is None:
        print("rclone move -> local directory: skipped (rclone is not installed)")
    else:
        print(
            f"rclone move -> local directory:                                       "
            f"{rclone_seconds:.2f} s"
        )
    ratios = f"hotwire/ftplib {apart / floor:.2f}"
    if rclone_seconds is not None:
        ratios += f", hotwire/rclone {apart / rclone_seconds:.2f} (target < 1)"
    print(
        f"{FILES} x 10 KiB from one FTP server: hotwire -> separate Dropbox emulator"
        f" {apart:.2f} s (embedded emulator {embedded:.2f} s), ftplib {floor:.2f} s, rclone "
        + (f"{rclone_seconds:.2f} s" if rclone_seconds is not None else "skipped")
        + f"; {ratios}"
    )


def main() -> None:
    with scratch_dir("hotwire-bench-ftp-") as root:
        run_all(root)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ftp"]:
        serve_ftp(Path(sys.argv[2]))
    else:
        main()
