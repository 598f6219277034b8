"""A real daemon with REST channels on hypercorn, port 0, and httpx clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from http_setup import ADMIN_TOKEN, BASIC_PASSWORD, write_config

from daemon import Config, Daemon, load_config


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_BASIC_PASSWORD", BASIC_PASSWORD)
    return write_config(tmp_path)


@pytest.fixture
def config(config_path: Path) -> Config:
    """The root conftest's `daemon` runs this configuration: channels of http_setup."""
    return load_config(config_path)


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
        yield client


@pytest.fixture
async def admin(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=daemon.url, headers=headers, timeout=30) as client:
        yield client
