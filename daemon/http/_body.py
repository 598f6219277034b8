"""Request bodies: received with back pressure, kept in memory or spooled to disk.

A REST channel reads the body before the service runs — the decision for
streaming large bodies: small bodies (up to ``spool_threshold``) stay in
memory; larger ones are written to a file under ``<state>/http-spool`` as
they arrive, in blocks, in a worker thread. While a block is being written
nothing more is received, so hypercorn's bounded app queue fills and it stops
reading the socket: real back pressure, so memory stays flat for any size
(Quart's own body object would buffer everything a slow consumer has not
taken). The size limit is enforced from ``Content-Length`` before reading and
again while reading. A client that disconnects mid-upload leaves no file.

Services get a `RequestBody`: ``read()`` (what ``raw_request`` returns),
``open()``, ``chunks()`` for async streaming, ``path`` for libraries that take
a file name, and ``save_to()`` to keep the file (a rename when possible).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import trio

__all__ = ["BodyTooLarge", "ClientDisconnected", "RequestBody", "receive_body"]

#: Received data is written to the spool file in blocks of this size.
WRITE_BLOCK = 1024 * 1024
#: Spool file writes run in threads; this bounds how many at once.
_SPOOL_THREADS = trio.CapacityLimiter(8)

Receive = Callable[[], Awaitable[dict[str, Any]]]


class BodyTooLarge(Exception):
    """The body exceeds the channel's ``max_body``; the request gets 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than this channel's limit of {limit} bytes")
        self.limit = limit


class ClientDisconnected(Exception):
    """The client went away before sending the whole body."""


class RequestBody:
    """A received request body, in memory or in a spool file that this object owns.

    The spool file is removed by `close` unless `save_to` moved it away.
    """

    def __init__(
        self, *, data: bytes = b"", path: Path | None = None, size: int = 0, owned: bool = True
    ) -> None:
        self._data = data
        self.size = size if path is not None else len(data)
        #: The spool file, or None when the body is in memory.
        self.path = path
        # A durable message's body belongs to the outbox, which removes it once delivered.
        self._owns_file = path is not None and owned

    def read(self) -> bytes:
        """The whole body as bytes (from disk for a spooled body)."""
        return self._data if self.path is None else self.path.read_bytes()

    def open(self) -> BinaryIO:
        """A binary file object positioned at the start of the body."""
        return io.BytesIO(self._data) if self.path is None else self.path.open("rb")

    async def chunks(self, size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The body in chunks, read from disk in a worker thread, for async services."""
        if self.path is None:
            for start in range(0, len(self._data), size):
                yield self._data[start : start + size]
            return
        with self.path.open("rb") as file:
            while chunk := await trio.to_thread.run_sync(file.read, size, limiter=_SPOOL_THREADS):
                yield chunk

    def save_to(self, destination: str | os.PathLike[str]) -> Path:
        """Store the body at ``destination``; a spool file this body owns is renamed if possible."""
        target = Path(destination)
        if self.path is None:
            target.write_bytes(self._data)
            return target
        if not self._owns_file:
            shutil.copyfile(self.path, target)
            return target
        try:
            os.replace(self.path, target)
        except OSError:  # another filesystem: copy, then drop the spool file
            shutil.copyfile(self.path, target)
            self.path.unlink()
        self.path = target
        self._owns_file = False
        return target

    def close(self) -> None:
        """Remove the spool file if this object still owns it."""
        if self.path is not None and self._owns_file:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


async def receive_body(
    receive: Receive,
    *,
    limit: int,
    declared_length: int | None,
    spool_threshold: int,
    spool_dir: Path,
) -> RequestBody:
    """Receive an ASGI request body.

    Raises BodyTooLarge (before reading anything when ``Content-Length`` says
    so) or ClientDisconnected; in both cases no spool file remains.
    """
    if declared_length is not None and declared_length > limit:
        raise BodyTooLarge(limit)
    event = await receive()
    # The common case, a small body in one event, without the general loop's bookkeeping.
    if event["type"] == "http.request" and not event.get("more_body", False):
        chunk = event.get("body", b"")
        if len(chunk) > limit:
            raise BodyTooLarge(limit)
        if len(chunk) <= spool_threshold:
            return RequestBody(data=chunk)
    received = bytearray()
    size = 0
    spool: BinaryIO | None = None
    try:
        while True:
            if event["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            received += chunk
            more = event.get("more_body", False)
            if spool is None and size > spool_threshold:
                spool = await trio.to_thread.run_sync(
                    _open_spool, spool_dir, limiter=_SPOOL_THREADS
                )
            if spool is not None and (len(received) >= WRITE_BLOCK or not more):
                block, received = received, bytearray()
                await trio.to_thread.run_sync(spool.write, block, limiter=_SPOOL_THREADS)
            if not more:
                break
            event = await receive()
    except BaseException:
        if spool is not None:
            spool.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool.name)
        raise
    if spool is None:
        return RequestBody(data=bytes(received))
    spool.close()
    return RequestBody(path=Path(spool.name), size=size)


def _open_spool(directory: Path) -> BinaryIO:
    directory.mkdir(parents=True, exist_ok=True)
    return typing.cast(
        BinaryIO, tempfile.NamedTemporaryFile(dir=directory, prefix="body-", delete=False)
    )
