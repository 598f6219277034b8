"""A real SQLite store and spool directory under the test's tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.outbox import Spool, SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with await SqliteStore.open(tmp_path / "outbox.sqlite") as store:
        yield store


@pytest.fixture
async def spool(tmp_path: Path) -> Spool:
    return await Spool.open(tmp_path / "spool")
