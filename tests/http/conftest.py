"""A real daemon with REST channels on hypercorn, port 0, and an httpx client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from http_setup import ADMIN_TOKEN, BASIC_PASSWORD, write_config

from daemon import Daemon, load_config, main


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_BASIC_PASSWORD", BASIC_PASSWORD)
    return write_config(tmp_path)


@pytest.fixture
async def http_daemon(config_path: Path) -> AsyncIterator[Daemon]:
    async with trio.open_nursery() as nursery:
        daemon: Daemon = await nursery.start(main, load_config(config_path))
        yield daemon
        daemon.stop()


@pytest.fixture
async def client(http_daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=http_daemon.url, timeout=30) as client:
        yield client


@pytest.fixture
async def admin(http_daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=http_daemon.url, headers=headers, timeout=30) as client:
        yield client
