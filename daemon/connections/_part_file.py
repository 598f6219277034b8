"""Downloads to a local path: written aside, given the real name only when complete."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_when_complete(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield ``<target>.part`` to write to; it replaces ``target`` if the block succeeds.

    Whatever happens, no ``.part`` is left behind, so a failed download leaves
    neither a truncated file under the real name nor a stray partial one.
    """
    final = Path(target)
    part = final.with_name(final.name + ".part")
    try:
        yield part
        part.replace(final)
    finally:
        part.unlink(missing_ok=True)
