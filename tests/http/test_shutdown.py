"""Graceful shutdown of a real `hotwire run` process."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import trio
from support import HOTWIRE, JsonLines, open_stream


async def refused(url: str) -> None:
    """Return once a new connection to ``url`` is refused.

    hypercorn closes its listener moments after the signal, with nothing to
    observe from outside the process but the refusal itself: try until then.
    """
    with trio.fail_after(5):
        while True:
            try:
                stream = await open_stream(url)
            except OSError:
                return
            await stream.aclose()
            await trio.sleep(0.01)


@pytest.mark.slow
async def test_sigterm_drains_in_flight_requests(config_path: Path) -> None:
    """SIGTERM during a 2 s request: it completes with 200, new connections are refused, exit 0."""
    # config_path has put TEST_BASIC_PASSWORD, which the configuration names, in the environment.
    process = await trio.lowlevel.open_process(
        [*HOTWIRE, "run", "--config", str(config_path)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    lines = JsonLines(process.stdout)
    result: dict[str, httpx.Response] = {}
    with trio.fail_after(30):
        url = (await lines.until("daemon_ready"))["urls"][0]
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def slow_request() -> None:
                result["slow"] = await client.get("/api/slow-no-timeout", params={"seconds": 2})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_request)
                await lines.until("slow_started")
                process.send_signal(signal.SIGTERM)
                await lines.until("daemon_stopping")
                await refused(url)
                assert "slow" not in result  # still in flight while new connections are refused
        assert await process.wait() == 0
        events = [line["event"] for line in await lines.rest()]
    await process.stdout.aclose()
    assert result["slow"].status_code == 200
    assert result["slow"].json() == {"slept": True}
    # With the default workers = "auto": each worker drained, then the supervisor.
    assert events.count("daemon_stopped") == (os.cpu_count() or 1)
    assert events[-1] == ("supervisor_stopped" if (os.cpu_count() or 1) > 1 else "daemon_stopped")
