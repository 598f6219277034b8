"""Spool: durable body files, files committed from incoming/, refused writes."""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from outbox_support import files

from daemon.exceptions import OutboxUnavailable
from daemon.outbox import Spool


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make the kernel refuse to grow any file past ``limit`` bytes (EFBIG), as root too.

    A real refused write in the middle of a body, which neither permission bits
    (root ignores them) nor a full disk (not something a test can arrange) gives.
    Python ignores SIGXFSZ already; it is set here so the process cannot die of it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


class TestBodies:
    async def test_bytes_become_the_body_file(self, spool: Spool) -> None:
        """store_bytes leaves the body under its id and nothing in incoming/."""
        assert await spool.store_bytes("m1", b"hello") == 5
        assert spool.body_path("m1").read_bytes() == b"hello"
        assert files(spool.incoming) == []

    async def test_file_in_incoming_is_committed_in_place(self, spool: Spool) -> None:
        """A file written into incoming/ (as receive_body does) becomes the body, renamed."""
        incoming = spool.incoming / "body-abc"
        incoming.write_bytes(b"abcdefg")
        assert await spool.commit("m1", incoming) == 7
        assert spool.body_path("m1").read_bytes() == b"abcdefg"
        assert files(spool.incoming) == []

    async def test_commit_takes_only_files_from_incoming(
        self, spool: Spool, tmp_path: Path
    ) -> None:
        """A file elsewhere (maybe on another filesystem) is refused and left alone."""
        elsewhere = tmp_path / "body.bin"
        elsewhere.write_bytes(b"x")
        with pytest.raises(ValueError, match="incoming"):
            await spool.commit("m1", elsewhere)
        assert elsewhere.exists()
        assert files(spool.bodies) == []

    async def test_commit_sees_through_symlinks(self, tmp_path: Path) -> None:
        """A spool opened through a symlink takes a file named by its real path."""
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        spool = await Spool.open(tmp_path / "link" / "spool")
        incoming = tmp_path / "real" / "spool" / "incoming" / "body-abc"
        incoming.write_bytes(b"abc")
        assert await spool.commit("m1", incoming) == 3
        assert spool.body_path("m1").read_bytes() == b"abc"

    async def test_discard_removes_a_body_and_ignores_a_missing_one(self, spool: Spool) -> None:
        """discard() is safe to repeat."""
        await spool.store_bytes("m1", b"x")
        await spool.discard("m1")
        await spool.discard("m1")
        assert files(spool.bodies) == []


class TestRefusedWrites:
    async def test_write_refused_midway_leaves_no_file(self, spool: Spool) -> None:
        """A body the kernel stops writing part-way is not kept, not even in part."""
        with file_size_limit(64 * 1024), pytest.raises(OutboxUnavailable) as caught:
            await spool.store_bytes("m1", b"x" * (256 * 1024))
        assert caught.value.reason == "file size limit exceeded"
        assert str(spool.incoming) in str(caught.value)
        assert files(spool.incoming) == []
        assert files(spool.bodies) == []
        assert await spool.store_bytes("m1", b"x" * (256 * 1024)) == 256 * 1024

    async def test_spool_under_a_file_is_unavailable(self, tmp_path: Path) -> None:
        """A spool path through a regular file cannot be created."""
        (tmp_path / "file").write_text("not a directory")
        with pytest.raises(OutboxUnavailable) as caught:
            await Spool.open(tmp_path / "file" / "spool")
        assert caught.value.reason == "spool directory missing"
