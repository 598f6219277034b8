"""Fixtures shared by the whole suite: a real daemon on a real services directory."""

from __future__ import annotations

import os
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from daemon import Config, Daemon, main


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A Config for tests: services and state under ``tmp_path``, port 0, fast watcher."""
    data: dict[str, Any] = {
        "paths": {"services": "services", "state": "state"},
        "server": {"port": 0, "grace_period": "5s"},
        "deploy": {"step": "5ms"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Config.from_mapping(data, source=tmp_path / "hotwire.toml")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def services_dir(config: Config) -> Path:
    config.paths.services.mkdir(parents=True, exist_ok=True)
    return config.paths.services


@pytest.fixture
def write_service(services_dir: Path) -> Callable[[str, str], Path]:
    """Write a service file atomically (as editors and deploy tools do) and return its path."""

    def write(name: str, source: str) -> Path:
        path = services_dir / name
        temporary = services_dir / f".{name}.tmp"
        temporary.write_text(textwrap.dedent(source))
        os.replace(temporary, path)
        return path

    return write


@pytest.fixture
async def daemon(config: Config, services_dir: Path) -> AsyncIterator[Daemon]:
    """The daemon's real main, started in-process; stopped gracefully after the test."""
    async with trio.open_nursery() as nursery:
        running: Daemon = await nursery.start(main, config)
        yield running
        running.stop()
