"""fsync of a directory: what makes a file created or renamed in it survive a power cut.

fsync of a file flushes its data, not the directory entry that names it; a
rename or a new file counts as durable only once its directory is synced too.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to disk (blocking: run it in a thread)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
