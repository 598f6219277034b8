"""wrk as the load generator: POST a body for a while, read the figures from a Lua hook.

wrk's ``done`` hook writes one line of numbers, so no benchmark parses wrk's
human-readable report.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass

from bench._servers import pinned

__all__ = ["Result", "run_wrk"]

_SCRIPT = """
wrk.method = "POST"
wrk.body = string.rep("x", %d)
wrk.headers["Content-Type"] = "application/octet-stream"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass(frozen=True)
class Result:
    """What one wrk run measured.

    ``errors`` counts socket errors, timeouts and answers of status 400 or more
    (wrk's "Non-2xx or 3xx responses").
    """

    requests_per_second: float
    p99_ms: float
    errors: int
    requests: int


def run_wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    body_size: int,
    threads: int = 1,
    core: int | None = None,
    strict: bool = True,
) -> Result:
    """One wrk run POSTing ``body_size`` bytes to ``url``.

    ``core`` pins wrk there (see `pinned`). ``strict`` raises RuntimeError
    when any request failed; otherwise failures are only counted.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_SCRIPT % body_size)
        script.flush()
        command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        completed = subprocess.run(
            pinned(core, [*command, "-s", script.name, url]), capture_output=True, text=True
        )
    output = completed.stdout
    match = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+)$", output, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed (exit {completed.returncode}):\n{output}{completed.stderr}")
    requests, duration_us, p99_us, errors = map(int, match.groups())
    if strict and errors:
        raise RuntimeError(f"wrk saw {errors} failed requests against {url}:\n{output}")
    return Result(requests / (duration_us / 1e6), p99_us / 1e3, errors, requests)
