"""Hotwire as the benchmarks run it: a ``hotwire run`` subprocess in a directory of its own."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping
from pathlib import Path

from bench._servers import HOTWIRE, REPO, Server, serving

__all__ = ["ACK_SERVICE", "ADMIN_TOKEN", "copy_services", "hotwire"]

ADMIN_TOKEN = "bench-admin-token"

#: The parts of conf/hotwire.toml every bench daemon has; paths into its directory.
BASE_CONFIG = f"""
[server]
host = "127.0.0.1"
port = {{port}}
grace_period = "5s"
workers = {{workers}}
{{server}}

[paths]
services = "services"
state = "state"

[log]
level = "warning"
format = "json"

[admin]
token = "{ADMIN_TOKEN}"
"""

#: A trivial service behind the benchmarks' POST channels: ``{"ok": true, "size": N}``.
ACK_SERVICE = """
from daemon import Service


class Ack(Service):
    name = "bench.ack"

    async def handle(self):
        self.response.payload = {"ok": True, "size": self.request.http.body.size}
"""


def hotwire(
    root: Path,
    config: str,
    *,
    services: Mapping[str, str] | None = None,
    workers: int = 1,
    server: str = "",
    core: int | None = None,
) -> contextlib.AbstractContextManager[Server]:
    """A Hotwire subprocess in ``root`` with BASE_CONFIG + ``config``; stopped afterwards.

    ``services`` are the service files to write (name: source); without them
    the repository's services are copied in, unless the caller put (edited)
    copies there first (`copy_services`). ``server`` adds lines to ``[server]``;
    ``core`` pins the daemon (see `bench._servers.pinned`).
    """
    if services is None:
        copy_services(root)
    else:
        (root / "services").mkdir(parents=True)
        for name, source in services.items():
            (root / "services" / name).write_text(source)
    path = root / "hotwire.toml"

    def command(port: int) -> list[str]:
        path.write_text(BASE_CONFIG.format(port=port, workers=workers, server=server) + config)
        return [str(HOTWIRE), "run", "--config", str(path)]

    return serving(command, "/admin/ready", root / "hotwire.log", cwd=root, core=core)


def copy_services(root: Path) -> Path:
    """``root / "services"``: a copy of the repository's services, made once."""
    services = root / "services"
    if not services.exists():
        shutil.copytree(REPO / "services", services, ignore=shutil.ignore_patterns("__pycache__"))
    return services
