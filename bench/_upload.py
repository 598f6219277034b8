"""The 1 GiB file the upload benchmarks send, and the checksum that proves it arrived whole."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["UPLOAD_SIZE", "make_upload", "sha256"]

UPLOAD_SIZE = 1024**3
_PIECE = 16 * 1024 * 1024


def make_upload(path: Path) -> str:
    """Write UPLOAD_SIZE random bytes to ``path``; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(UPLOAD_SIZE // _PIECE):
            data = os.urandom(_PIECE)
            digest.update(data)
            file.write(data)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
