"""The spool directory: message bodies kept as files, written durably before their row.

Layout under the spool directory::

    incoming/   bodies being written (a durable REST channel streams here); never final
    bodies/     one file per accepted message, named by its id

A body becomes final with fsync(file), rename into ``bodies/``, fsync(bodies/):
after that a power cut cannot lose it or leave it partial. Both directories are
on one filesystem, so the rename is atomic. Whatever is left in ``incoming/``
after a crash, and any body without a row, is removed by the deliverer once it
is old enough not to be an accept in progress in another process (see
``Outbox``).

Every failure to write becomes :class:`~daemon.exceptions.OutboxUnavailable`
with a short reason, and leaves no file behind.
"""

from __future__ import annotations

import errno
import io
import os
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import trio

from daemon._fsync import fsync_directory
from daemon.exceptions import OutboxUnavailable

_T = TypeVar("_T")

_MAX_THREADS = 4  # spool file operations running at once, per Spool

_REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk full",
    errno.EFBIG: "file size limit exceeded",
    errno.EACCES: "spool directory not writable",
    errno.EPERM: "spool directory not writable",
    errno.EROFS: "spool directory not writable",
    errno.ENOENT: "spool directory missing",
    errno.ENOTDIR: "spool directory missing",
}


def unavailable(exc: OSError, path: Path) -> OutboxUnavailable:
    """Translate an OSError from spool I/O into OutboxUnavailable with a short reason."""
    reason = _REASONS.get(exc.errno or 0, "spool I/O error")
    return OutboxUnavailable(reason, f"{path}: {exc.strerror or exc}")


def _write_all(file: io.FileIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = file.write(view)
        view = view[written or 0 :]


def _files_older_than(directory: Path, max_age: float) -> list[Path]:
    """Return the files in ``directory`` not written or renamed for ``max_age`` seconds."""
    limit = time.time() - max_age  # file times are the real clock's, whatever ours is
    old = []
    with os.scandir(directory) as entries:
        for entry in entries:
            with suppress(FileNotFoundError):  # removed by its owner since the listing
                if entry.stat().st_ctime <= limit:
                    old.append(Path(entry.path))
    return old


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class Spool:
    """Body files of outbox messages, in one directory.

    Use :meth:`open` to create one. Blocking file I/O runs in threads, at most
    ``_MAX_THREADS`` at a time (a body is written by a single thread call, so a
    1 GiB ``bytes`` body holds one thread for its duration).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.incoming = directory / "incoming"
        self.bodies = directory / "bodies"
        # `incoming` with symlinks resolved, for commit's check; `open` sets it once it exists.
        self._real_incoming = self.incoming
        self._limiter = trio.CapacityLimiter(_MAX_THREADS)

    @classmethod
    async def open(cls, directory: Path) -> Spool:
        """Create the spool's directories (durably) if needed and return the spool."""
        spool = cls(directory)
        await spool._run(spool._create_directories, path=directory)
        return spool

    def _create_directories(self) -> None:
        created = not self.directory.exists()
        for directory in (self.incoming, self.bodies):
            directory.mkdir(parents=True, exist_ok=True)
        # The directory entries must be on disk before a body inside them counts as durable.
        fsync_directory(self.directory)
        if created:
            fsync_directory(self.directory.parent)
        self._real_incoming = self.incoming.resolve()

    async def _run(self, function: Callable[..., _T], *args: object, path: Path) -> _T:
        try:
            return await trio.to_thread.run_sync(function, *args, limiter=self._limiter)
        except OSError as exc:
            raise unavailable(exc, path) from exc

    def body_path(self, message_id: str) -> Path:
        """Return where the body of ``message_id`` is kept once accepted."""
        return self.bodies / message_id

    async def store_bytes(self, message_id: str, data: bytes) -> int:
        """Write ``data`` durably as the body of ``message_id``; return its size."""
        temporary = self.incoming / f"{message_id}.part"
        return await self._run(self._store_bytes, temporary, data, message_id, path=temporary)

    def _store_bytes(self, temporary: Path, data: bytes, message_id: str) -> int:
        try:
            with io.FileIO(temporary, "xb") as file:
                _write_all(file, data)
            return self._commit(temporary, message_id)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    async def commit(self, message_id: str, incoming: Path) -> int:
        """Make a file written in ``incoming/`` the durable body of ``message_id``.

        Returns its size. Raises ValueError when ``incoming`` is not directly
        inside ``incoming/`` (a rename from elsewhere may cross filesystems).
        """
        return await self._run(self._commit_incoming, incoming, message_id, path=incoming)

    def _commit_incoming(self, incoming: Path, message_id: str) -> int:
        if incoming.parent.resolve() != self._real_incoming:
            raise ValueError(f"body_file must be a file in {self.incoming}, got {incoming}")
        return self._commit(incoming, message_id)

    def _commit(self, temporary: Path, message_id: str) -> int:
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        final = self.body_path(message_id)
        os.rename(temporary, final)
        try:
            fsync_directory(self.bodies)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return size

    async def discard(self, message_id: str) -> None:
        """Remove the body of ``message_id`` if there is one."""
        path = self.body_path(message_id)
        await self._run(_remove_files, [path], path=path)

    async def old_files(self, directory: Path, max_age: float) -> list[Path]:
        """Return the files in ``directory`` (``incoming`` or ``bodies``) untouched for a while.

        Untouched: not written or renamed (the file's ctime) for ``max_age`` seconds.
        """
        return await self._run(_files_older_than, directory, max_age, path=directory)

    async def remove(self, paths: list[Path]) -> None:
        """Remove the spool files ``paths``; one already gone is no error."""
        await self._run(_remove_files, paths, path=self.directory)
