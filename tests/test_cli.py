"""The hotwire command, run as a real subprocess."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import trio
from support import HOTWIRE, JsonLines

import daemon


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "hotwire.toml"
    path.write_text(
        '[server]\nport = 0\nworkers = 1\n[paths]\nservices = "services"\nstate = "state"\n'
        '[log]\nformat = "json"\n'
    )
    (tmp_path / "services").mkdir()
    return path


def test_version() -> None:
    result = subprocess.run([*HOTWIRE, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"hotwire {daemon.__version__}"


def test_check_lists_each_problem(tmp_path: Path) -> None:
    """hotwire check imports every file without starting anything; exit 1 names each problem."""
    config = write_config(tmp_path)
    (tmp_path / "services" / "good.py").write_text(
        "from daemon import Service\nclass G(Service):\n    name = 'g'\n"
        "    async def handle(self): pass\n"
    )
    (tmp_path / "services" / "broken.py").write_text("def oops(:\n")
    (tmp_path / "services" / "raises.py").write_text("raise RuntimeError('at import')\n")
    result = subprocess.run(
        [*HOTWIRE, "check", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "broken.py" in result.stderr and "SyntaxError" in result.stderr
    assert "RuntimeError: at import" in result.stderr
    assert "2 problem(s) found" in result.stderr
    (tmp_path / "services" / "broken.py").unlink()
    (tmp_path / "services" / "raises.py").unlink()
    result = subprocess.run(
        [*HOTWIRE, "check", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_check_reports_jobs_naming_unknown_services(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text()
        + '[[scheduler.jobs]]\nname = "j"\nservice = "nobody.home"\ninterval = "1m"\n'
    )
    result = subprocess.run(
        [*HOTWIRE, "check", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "scheduler job 'j' names 'nobody.home'" in result.stderr


def test_check_reports_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "hotwire.toml"
    path.write_text("[paths]\nservices = 1\nstate = 's'\n")
    result = subprocess.run(
        [*HOTWIRE, "check", "--config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "paths.services: expected a path" in result.stderr


async def test_run_logs_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    """hotwire run logs JSON lines, says when it is ready, and exits 0 on SIGTERM."""
    config = write_config(tmp_path)
    process = await trio.lowlevel.open_process(
        [*HOTWIRE, "run", "--config", str(config)], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    lines = JsonLines(process.stdout)
    with trio.fail_after(20):
        ready = await lines.until("daemon_ready")
        assert ready["startup_ms"] < 1000
        process.send_signal(signal.SIGTERM)
        events = [line["event"] for line in await lines.rest()]
        assert await process.wait() == 0
    await process.stdout.aclose()
    assert events[-3:] == ["daemon_stopping", "router_closed", "daemon_stopped"]


async def test_standalone_dropbox_emulator(tmp_path: Path) -> None:
    """hotwire emulator dropbox serves the real SDK with a generated token, until SIGTERM."""
    from daemon.connections import build_dropbox_client

    config = write_config(tmp_path)
    process = await trio.lowlevel.open_process(
        [*HOTWIRE, "emulator", "dropbox", "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    lines = JsonLines(process.stdout)
    with trio.fail_after(20):
        token_file = Path((await lines.until("dropbox_emulator_token"))["path"])
        where = await lines.until("dropbox_emulator_listening")
        client = build_dropbox_client(
            user_agent="cli-test",
            token=token_file.read_text().strip(),
            api_host=where["api_host"],
            content_host=where["content_host"],
            ca_certs=where["ca_path"],
        )
        await trio.to_thread.run_sync(client.files_upload, b"from the SDK", "/hello.txt")
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
    await process.stdout.aclose()
    assert (Path(where["root"]) / "hello.txt").read_bytes() == b"from the SDK"
    assert token_file.stat().st_mode & 0o777 == 0o600
