"""Files only the daemon's user may read (mode 0600): secrets, tokens, private keys.

Each is written whole beside its final name and then given that name, so a
reader (another worker, a restart after a crash) sees the whole content or
none of it, never a file cut short.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["read_or_create_token", "read_token", "write_private"]


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, replacing any file there.

    The directory must exist; its own mode is the caller's choice.
    """
    with _private_temporary(path, data) as temporary:
        os.replace(temporary, path)


def read_token(path: Path) -> str | None:
    """The token in ``path``, or None if there is no such file."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def read_or_create_token(path: Path) -> tuple[str, bool]:
    """Return the token in ``path``, and whether this call made it.

    A missing file is created (with its directory) holding a new random token,
    mode 0600. Processes racing to create it all end up with the first one's
    token.
    """
    existing = read_token(path)
    if existing is not None:
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    with _private_temporary(path, (token + "\n").encode()) as temporary:
        try:
            os.link(temporary, path)  # only if absent, and already whole
        except FileExistsError:  # another process made it a moment ago
            return path.read_text().strip(), False
    return token, True


@contextlib.contextmanager
def _private_temporary(path: Path, data: bytes) -> Iterator[Path]:
    """A new file beside ``path`` holding ``data``, mode 0600; removed on leaving."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)
