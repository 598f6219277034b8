"""Private files: mode 0600, written whole, and a token made once whoever asks first."""

from __future__ import annotations

import threading
from pathlib import Path

from daemon._private_files import read_or_create_token, write_private


class TestWritePrivate:
    def test_replaces_a_readable_file_with_a_private_one(self, tmp_path: Path) -> None:
        """An existing file's looser mode is not kept, and no temporary file is left."""
        path = tmp_path / "secret"
        path.write_text("old")
        path.chmod(0o644)
        write_private(path, b"new")
        assert path.read_bytes() == b"new"
        assert path.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in tmp_path.iterdir()] == ["secret"]


class TestReadOrCreateToken:
    def test_made_once_then_read(self, tmp_path: Path) -> None:
        path = tmp_path / "state" / "some.token"
        token, created = read_or_create_token(path)
        assert created and len(token) >= 32
        assert path.stat().st_mode & 0o777 == 0o600
        assert read_or_create_token(path) == (token, False)
        assert [p.name for p in path.parent.iterdir()] == ["some.token"]

    def test_racing_creators_agree(self, tmp_path: Path) -> None:
        """Threads asking at once all get the one token that was made, and it is whole."""
        path = tmp_path / "raced.token"
        start = threading.Barrier(8)
        results: list[tuple[str, bool]] = []

        def ask() -> None:
            start.wait()
            results.append(read_or_create_token(path))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({token for token, _ in results}) == 1
        assert sum(created for _, created in results) == 1
        assert results[0][0] == path.read_text().strip()
