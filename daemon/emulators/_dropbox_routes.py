"""The Dropbox API routes the emulator implements, on top of the Store.

Arguments arrive decoded by the SDK's own stone validators, results and errors
leave as the SDK's own types, so the wire shapes are the ones the SDK parses.
A handler returns its route's result, or raises ApiFailure (409) or BadRequest
(400). A files/upload body of up to 1 MiB is read into memory, then checked,
staged and committed in one worker-thread call: small uploads are the common
case, and each hop to a thread costs more than the work. Larger bodies, and
every session call, stream to a staging file in 1 MiB batches written (and
hashed) in a worker thread, so memory stays flat whatever the size.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import os
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import trio
from dropbox import files
from dropbox.content_hash import DropboxContentHasher

from ._dropbox_store import LookupFailure, Store, WriteFailure

#: The real API's limit on the body of one upload call (files/upload, and each session call).
MAX_UPLOAD_SIZE = 150 * 1024 * 1024
_BATCH = 1 << 20
#: files/upload bodies up to this size are handled in memory, in one worker-thread call.
_IN_MEMORY_BODY = 1 << 20
_DEFAULT_LIST_LIMIT = 2000

T = TypeVar("T")


class ApiFailure(Exception):
    """The route failed with ``error``, a value of the route's error type (HTTP 409)."""

    def __init__(self, error: Any) -> None:
        super().__init__(error)
        self.error = error


class BadRequest(Exception):
    """The request itself is malformed (HTTP 400, plain text)."""


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class Body:
    """A request body, consumed as the route needs it."""

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._receive = receive
        self._complete = False
        self._pending: deque[bytes] = deque()  # read ahead by read_small

    async def next_chunk(self) -> bytes | None:
        """Return the next piece of the body, None once it is complete."""
        if self._pending:
            return self._pending.popleft()
        return await self._receive_chunk()

    async def _receive_chunk(self) -> bytes | None:
        while not self._complete:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            self._complete = not message.get("more_body", False)
            if message.get("body"):
                return bytes(message["body"])
        return None

    async def read(self, limit: int) -> bytes:
        """Return the whole body; BadRequest if it exceeds ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while (chunk := await self.next_chunk()) is not None:
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"request body exceeds {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def read_small(self, limit: int) -> bytes | None:
        """Return the whole body if it is at most ``limit`` bytes, else None.

        When it is larger, what was read stays for ``next_chunk``, so the body
        can still be streamed from its start.
        """
        size = sum(map(len, self._pending))
        while (chunk := await self._receive_chunk()) is not None:
            self._pending.append(chunk)
            size += len(chunk)
            if size > limit:
                return None
        data = b"".join(self._pending)
        self._pending.clear()
        return data

    async def drain(self) -> None:
        """Discard whatever is left, so the client can read the response."""
        while await self.next_chunk() is not None:
            pass

    async def save(
        self,
        file: BinaryIO,
        hashers: list[DropboxContentHasher],
        limit: int,
        limiter: trio.CapacityLimiter,
    ) -> int | None:
        """Append the body to ``file`` and feed it to ``hashers``; return its size.

        Returns None if the body exceeds ``limit``: it is then read to the end
        (so the client gets the error response) but no longer written.
        """
        size = 0
        batch: list[bytes] = []
        batch_size = 0
        while (chunk := await self.next_chunk()) is not None:
            size += len(chunk)
            if size > limit:
                batch.clear()
                continue
            batch.append(chunk)
            batch_size += len(chunk)
            if batch_size >= _BATCH:
                await trio.to_thread.run_sync(_write, file, hashers, batch, limiter=limiter)
                batch, batch_size = [], 0
        if batch:
            await trio.to_thread.run_sync(_write, file, hashers, batch, limiter=limiter)
        return None if size > limit else size


def _write(file: BinaryIO, hashers: list[DropboxContentHasher], batch: list[bytes]) -> None:
    data = b"".join(batch)
    file.write(data)
    for hasher in hashers:
        hasher.update(data)


def _tagged(union: Any, tag: str, value: Any = None) -> Any:
    """The value ``tag`` of a stone union: void tags are attributes, the others constructors."""
    return getattr(union, tag) if value is None else getattr(union, tag)(value)


def _open_for_append(path: Path) -> BinaryIO:
    return path.open("ab")


@dataclass
class _Session:
    path: Path
    offset: int = 0
    hasher: DropboxContentHasher = field(default_factory=DropboxContentHasher)
    closed: bool = False
    lock: trio.Lock = field(default_factory=trio.Lock)


class _Uncommitted(Exception):
    """An in-memory upload was staged, but its commit failed: the data stays staged."""

    def __init__(self, session: _Session, failure: WriteFailure) -> None:
        super().__init__(failure)
        self.session = session
        self.failure = failure


class Routes:
    """Handlers of the files/* routes, keyed by the route names the SDK calls."""

    def __init__(
        self, store: Store, limiter: trio.CapacityLimiter, max_upload_size: int = MAX_UPLOAD_SIZE
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._max_upload_size = max_upload_size
        self._sessions: dict[str, _Session] = {}
        Handler = Callable[[Any, Body], Awaitable[Any]]
        self.table: dict[str, tuple[Any, Handler]] = {
            "files/upload": (files.upload, self.upload),
            "files/upload_session/start": (files.upload_session_start, self.session_start),
            "files/upload_session/append_v2": (files.upload_session_append_v2, self.append),
            "files/upload_session/finish": (files.upload_session_finish, self.finish),
            "files/list_folder": (files.list_folder, self.list_folder),
            "files/list_folder/continue": (files.list_folder_continue, self.list_continue),
            "files/get_metadata": (files.get_metadata, self.get_metadata),
            "files/download": (files.download, self.download),
            "files/delete_v2": (files.delete_v2, self.delete),
        }

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(
            functools.partial(function, *args, **kwargs), limiter=self._limiter
        )

    # -- uploads ---------------------------------------------------------------

    async def upload(self, arg: Any, body: Body) -> Any:
        data = await body.read_small(_IN_MEMORY_BODY)
        if data is not None:
            try:
                return await self._run(self._upload_in_memory, data, arg)
            except _Uncommitted as exc:
                raise self._keep(exc.session, exc.failure) from exc.failure
        session = _Session(await self._run(self._store.new_staging_file))
        kept = False
        try:
            failure = await self._append(session, body, arg.content_hash)
            if failure:
                raise ApiFailure(getattr(files.UploadError, failure))
            try:
                return await self._commit(session, arg)
            except WriteFailure as exc:
                kept = True
                raise self._keep(session, exc) from exc
        finally:
            if not kept:
                await self._discard(session)

    def _upload_in_memory(self, data: bytes, arg: Any) -> Any:
        """files/upload of a body held in memory, in a worker thread: check, stage, commit."""
        if len(data) > self._max_upload_size:
            raise ApiFailure(files.UploadError.payload_too_large)
        hasher = DropboxContentHasher()
        hasher.update(data)
        content_hash = hasher.copy().hexdigest()  # hexdigest() ends a hasher
        if arg.content_hash is not None and arg.content_hash != content_hash:
            raise ApiFailure(files.UploadError.content_hash_mismatch)
        staged = self._store.new_staging_file(data)
        try:
            return self._store.commit(staged, arg, content_hash)
        except WriteFailure as exc:
            raise _Uncommitted(_Session(staged, len(data), hasher), exc) from exc
        except BaseException:
            staged.unlink(missing_ok=True)
            raise

    def _keep(self, session: _Session, failure: WriteFailure) -> ApiFailure:
        """The failure of an upload whose commit failed, its data kept as a session.

        As the real API does: the client may finish that session elsewhere.
        """
        session_id = self._register(session)
        reason = files.UploadWriteFailed(reason=failure.error, upload_session_id=session_id)
        return ApiFailure(files.UploadError.path(reason))

    async def session_start(self, arg: Any, body: Body) -> Any:
        session = _Session(await self._run(self._store.new_staging_file))
        try:
            failure = await self._append(session, body, arg.content_hash)
            if failure:
                raise ApiFailure(getattr(files.UploadSessionStartError, failure))
        except BaseException:
            await self._discard(session)
            raise
        session.closed = arg.close
        return files.UploadSessionStartResult(session_id=self._register(session))

    async def append(self, arg: Any, body: Body) -> None:
        errors = files.UploadSessionAppendError
        async with self._session(arg.cursor, errors) as session:
            if session.closed:
                raise ApiFailure(errors.closed)
            failure = await self._append(session, body, arg.content_hash)
            if failure:
                raise ApiFailure(getattr(errors, failure))
            session.closed = arg.close

    async def finish(self, arg: Any, body: Body) -> Any:
        errors = files.UploadSessionFinishError
        async with self._session(arg.cursor, errors, lookup_failed=True) as session:
            failure = await self._append(session, body, arg.content_hash, closed=session.closed)
            if failure == "closed":
                raise ApiFailure(errors.lookup_failed(files.UploadSessionLookupError.closed))
            if failure:
                raise ApiFailure(getattr(errors, failure))
            try:
                metadata = await self._commit(session, arg.commit)
            except WriteFailure as exc:
                raise ApiFailure(errors.path(exc.error)) from exc
            del self._sessions[arg.cursor.session_id]
            return metadata

    async def _append(
        self, session: _Session, body: Body, expected_hash: str | None, *, closed: bool = False
    ) -> str | None:
        """Append the body to the session; return the failing error tag, if any (then undone)."""
        this_call = DropboxContentHasher()
        running = session.hasher.copy()
        file = await self._run(_open_for_append, session.path)
        try:
            size = await body.save(file, [this_call, running], self._max_upload_size, self._limiter)
        finally:
            with trio.CancelScope(shield=True):
                await self._run(file.close)
        failure = None
        if size is None:
            failure = "payload_too_large"
        elif expected_hash is not None and expected_hash != this_call.hexdigest():
            failure = "content_hash_mismatch"
        elif closed and size:
            failure = "closed"
        if failure:
            await self._run(os.truncate, session.path, session.offset)
            return failure
        assert size is not None
        session.offset += size
        session.hasher = running
        return None

    async def _commit(self, session: _Session, info: Any) -> Any:
        content_hash = session.hasher.copy().hexdigest()  # hexdigest() ends a hasher
        return await self._run(self._store.commit, session.path, info, content_hash)

    def _register(self, session: _Session) -> str:
        session_id = secrets.token_urlsafe(24)
        self._sessions[session_id] = session
        return session_id

    async def _discard(self, session: _Session) -> None:
        with trio.CancelScope(shield=True):
            await self._run(session.path.unlink, missing_ok=True)

    @contextlib.asynccontextmanager
    async def _session(
        self, cursor: Any, errors: Any, *, lookup_failed: bool = False
    ) -> AsyncIterator[_Session]:
        """The session of ``cursor``, locked, once checked to be at the cursor's offset."""

        def fail(tag: str, value: Any = None) -> ApiFailure:
            if lookup_failed:
                return ApiFailure(
                    errors.lookup_failed(_tagged(files.UploadSessionLookupError, tag, value))
                )
            return ApiFailure(_tagged(errors, tag, value))

        session = self._sessions.get(cursor.session_id)
        if session is None:
            raise fail("not_found")
        async with session.lock:
            if self._sessions.get(cursor.session_id) is not session:  # finished meanwhile
                raise fail("not_found")
            if cursor.offset != session.offset:
                offset_error = files.UploadSessionOffsetError(correct_offset=session.offset)
                raise fail("incorrect_offset", offset_error)
            yield session

    # -- reads and deletes -----------------------------------------------------

    async def get_metadata(self, arg: Any, body: Body) -> Any:
        try:
            return await self._run(self._store.metadata, arg.path)
        except LookupFailure as exc:
            raise ApiFailure(files.GetMetadataError.path(exc.error)) from exc

    async def download(self, arg: Any, body: Body) -> tuple[Any, Path]:
        try:
            return await self._run(self._store.file_for_download, arg.path, arg.rev)
        except LookupFailure as exc:
            raise ApiFailure(files.DownloadError.path(exc.error)) from exc

    async def delete(self, arg: Any, body: Body) -> Any:
        try:
            return files.DeleteResult(metadata=await self._run(self._store.delete, arg.path))
        except LookupFailure as exc:
            raise ApiFailure(files.DeleteError.path_lookup(exc.error)) from exc

    async def list_folder(self, arg: Any, body: Body) -> Any:
        if arg.path == "/":
            raise BadRequest('path: Specify the root folder as an empty string rather than as "/".')
        cursor = {"p": arg.path, "r": arg.recursive, "l": arg.limit or _DEFAULT_LIST_LIMIT}
        return await self._page({**cursor, "o": 0, "s": time.time_ns()})

    async def list_continue(self, arg: Any, body: Body) -> Any:
        try:
            cursor = json.loads(base64.urlsafe_b64decode(arg.cursor.encode()))
            if set(cursor) != {"p", "r", "l", "o", "s"}:
                raise ValueError(cursor)
        except (ValueError, binascii.Error) as exc:
            raise BadRequest('Invalid "cursor" parameter') from exc
        return await self._page(cursor)

    async def _page(self, cursor: dict[str, Any]) -> Any:
        """One page of a listing; once it is complete, the files changed since it started."""
        path, recursive, limit, offset = cursor["p"], cursor["r"], cursor["l"], cursor["o"]
        try:
            if offset is None:
                now = time.time_ns()
                entries = await self._run(
                    self._store.changed_since, path, recursive=recursive, since_ns=cursor["s"]
                )
                has_more, cursor = False, {**cursor, "s": now}
            else:
                listing = await self._run(self._store.list_folder, path, recursive=recursive)
                entries = listing[offset : offset + limit]
                has_more = offset + limit < len(listing)
                cursor = {**cursor, "o": offset + limit if has_more else None}
        except LookupFailure as exc:
            raise ApiFailure(files.ListFolderError.path(exc.error)) from exc
        token = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
        return files.ListFolderResult(entries=entries, cursor=token, has_more=has_more)
