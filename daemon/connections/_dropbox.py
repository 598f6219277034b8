"""A configured Dropbox connection: the SDK client, plus async helpers that stream.

``self.cloud.dropbox["NAME"].conn.client`` is a real ``dropbox.Dropbox``
(Zato's path to it), sharing one connection pool per connection; sync
services call it directly. Native async services use the helpers, which run
the SDK in threads through a per-connection limiter:

- ``await conn.upload(path, source, mode="add")``: ``source`` is bytes, a
  file path or a seekable binary file object (read from its current
  position). Up to ``single_upload_limit`` it is one request; above, an
  upload session of ``chunk_size`` chunks, so at most one chunk is in memory
  (Dropbox refuses single uploads over 150 MiB). Each call carries its data's
  content hash, which Dropbox checks on arrival.
- ``list``, ``download`` (to a file), ``delete``.

429 and 5xx answers are retried by the SDK with back-off, honouring
``Retry-After``; connections dropped without an answer by urllib3 (see
`_dropbox_client`). A session append whose retry hits ``incorrect_offset``
resumes from the offset Dropbox reports.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import dropbox
import requests
import structlog
import trio
from dropbox import files
from dropbox.content_hash import DropboxContentHasher

from .._config import DropboxConnectionConfig
from ..exceptions import ConfigError, ConnectionFailed, RemoteFileError
from ._dropbox_client import build_dropbox_client
from ._errors import describe_dropbox_error
from ._part_file import replaced_when_complete
from ._registry_types import DropboxEndpoint

__all__ = ["DropboxConnection"]

log = structlog.get_logger(__name__)

WriteModeName = Literal["add", "overwrite", "autorename"]
Source = bytes | str | os.PathLike[str] | BinaryIO


class DropboxConnection:
    """One ``[cloud.dropbox."NAME"]`` connection.

    ``endpoint`` is required for ``emulator = true``; ``token`` (set through
    the admin API) replaces the configured credentials.
    """

    def __init__(
        self,
        name: str,
        config: DropboxConnectionConfig,
        *,
        endpoint: DropboxEndpoint | None = None,
        token: str | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._target = _Target.of(name, config, endpoint)
        self._limiter = trio.CapacityLimiter(config.concurrency)
        self._token_override = token
        self.client = self._build_client()

    def __repr__(self) -> str:
        return f"DropboxConnection({self.name!r})"

    @property
    def conn(self) -> DropboxConnection:
        """The connection itself: Zato services write ``self.cloud.dropbox[name].conn.client``."""
        return self

    def set_token(self, token: str) -> None:
        """Use a new access token from the next call on (the admin API's "change token")."""
        self._token_override = token
        old, self.client = self.client, self._build_client()
        old.close()
        log.info("dropbox_token_changed", connection=self.name)

    def close(self) -> None:
        self.client.close()

    def describe(self) -> dict[str, Any]:
        """For the admin API: settings, and each secret only as set or unset."""
        c, target = self.config, self._target
        return {
            "kind": "cloud.dropbox",
            "name": self.name,
            "user_agent": c.user_agent,
            "emulator": c.emulator,
            "api_host": target.api_host,
            "content_host": target.content_host,
            "default_directory": c.default_directory,
            "secrets": {
                "token": "set" if (self._token_override or target.token) else "unset",
                "refresh_token": "set" if c.refresh_token else "unset",
                "app_secret": "set" if c.app_secret else "unset",
            },
        }

    # -- async helpers ----------------------------------------------------------------

    async def upload(self, path: str, source: Source, *, mode: WriteModeName = "add") -> Any:
        """Upload ``source`` to ``path`` (relative paths go under ``default_directory``).

        ``mode``: ``add`` fails on a conflict, ``overwrite`` replaces, ``autorename``
        picks a free name. Returns the SDK's FileMetadata.
        """
        return await self._run(self._upload, self.resolve(path), source, mode)

    async def list(self, path: str = "") -> builtins.list[Any]:
        """Every entry of folder ``path`` (all pages), as SDK metadata objects."""
        entries: builtins.list[Any] = await self._run(self._list, self.resolve(path))
        return entries

    async def download(self, path: str, local_file: str | os.PathLike[str]) -> Any:
        """Download ``path`` to ``local_file``, streamed; returns the FileMetadata."""
        return await self._run(self._download, self.resolve(path), os.fspath(local_file))

    async def delete(self, path: str) -> Any:
        """Delete the file or folder at ``path``."""
        return await self._run(
            lambda p: self.client.files_delete_v2(p).metadata, self.resolve(path)
        )

    def resolve(self, path: str) -> str:
        """An absolute Dropbox path: relative ones go under ``default_directory``."""
        joined = (
            posixpath.join(self.config.default_directory, path)
            if path
            else self.config.default_directory
        )
        normal = posixpath.normpath(joined)
        return "" if normal == "/" else normal

    async def _run(self, function: Any, *args: Any) -> Any:
        try:
            return await trio.to_thread.run_sync(function, *args, limiter=self._limiter)
        except dropbox.exceptions.DropboxException as exc:
            raise _translate(self.name, exc) from exc
        except requests.RequestException as exc:
            raise ConnectionFailed(
                f"Dropbox connection {self.name!r}: {type(exc).__name__} talking to Dropbox"
            ) from exc

    # -- blocking work, in threads ----------------------------------------------------

    def _build_client(self) -> Any:
        c, target = self.config, self._target
        return build_dropbox_client(
            user_agent=c.user_agent,
            token=self._token_override or target.token,
            refresh_token=None if self._token_override else target.refresh_token,
            app_key=target.app_key,
            app_secret=target.app_secret,
            timeout=c.timeout,
            max_retries_on_error=c.max_retries_on_error,
            max_retries_on_rate_limit=c.max_retries_on_rate_limit,
            api_host=target.api_host,
            content_host=target.content_host,
            ca_certs=target.ca_certs,
        )

    def _upload(self, path: str, source: Source, mode: WriteModeName) -> Any:
        write_mode = files.WriteMode.overwrite if mode == "overwrite" else files.WriteMode.add
        autorename = mode == "autorename"
        with _opened(source) as (stream, start, size):
            if size <= self.config.single_upload_limit:
                data = stream.read()
                return self.client.files_upload(
                    data, path, mode=write_mode, autorename=autorename, content_hash=_hash(data)
                )
            chunk = self.config.chunk_size
            first = stream.read(chunk)
            session = self.client.files_upload_session_start(first, content_hash=_hash(first))
            cursor = files.UploadSessionCursor(session.session_id, len(first))
            while size - cursor.offset > chunk:
                stream.seek(start + cursor.offset)
                data = stream.read(chunk)
                try:
                    self.client.files_upload_session_append_v2(
                        data, cursor, content_hash=_hash(data)
                    )
                except dropbox.exceptions.ApiError as exc:
                    cursor.offset = _correct_offset(exc)  # a retried append had landed
                    continue
                cursor.offset += len(data)
            stream.seek(start + cursor.offset)
            last = stream.read()
            commit = files.CommitInfo(path, mode=write_mode, autorename=autorename)
            return self.client.files_upload_session_finish(
                last, cursor, commit, content_hash=_hash(last)
            )

    def _list(self, path: str) -> builtins.list[Any]:
        result = self.client.files_list_folder(path)
        entries = list(result.entries)
        while result.has_more:
            result = self.client.files_list_folder_continue(result.cursor)
            entries += result.entries
        return entries

    def _download(self, path: str, local_file: str) -> Any:
        with replaced_when_complete(local_file) as part:
            return self.client.files_download_to_file(os.fspath(part), path)


@dataclass(frozen=True)
class _Target:
    """Where a connection's client goes and the credentials it shows there.

    The embedded emulator's endpoint for ``emulator = true``, else what the
    configuration says; every other setting comes from the configuration in
    both cases.
    """

    api_host: str | None
    content_host: str | None
    ca_certs: Path | None
    token: str | None
    refresh_token: str | None = None
    app_key: str | None = None
    app_secret: str | None = None

    @classmethod
    def of(
        cls, name: str, config: DropboxConnectionConfig, endpoint: DropboxEndpoint | None
    ) -> _Target:
        if not config.emulator:
            return cls(
                api_host=config.api_host,
                content_host=config.content_host,
                ca_certs=config.ca_certs,
                token=config.token.reveal() if config.token else None,
                refresh_token=config.refresh_token.reveal() if config.refresh_token else None,
                app_key=config.app_key,
                app_secret=config.app_secret.reveal() if config.app_secret else None,
            )
        if endpoint is None:
            # The configuration enables the emulator (Config checks that), but it
            # is not running: emulators start with the daemon, not on a reload.
            raise ConfigError(
                f"cloud.dropbox.{name!r}: emulator = true, but the Dropbox emulator is not"
                " running (enabling [emulators.dropbox] takes a restart)"
            )
        return cls(
            api_host=endpoint.api_host,
            content_host=endpoint.content_host,
            ca_certs=endpoint.ca_path,
            token=endpoint.token,
        )


def _hash(data: bytes) -> str:
    """Dropbox's content hash of one call's data, which Dropbox checks on arrival."""
    hasher = DropboxContentHasher()
    hasher.update(data)
    return str(hasher.hexdigest())


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[tuple[BinaryIO, int, int]]:
    """The source as a seekable binary stream, the position its data starts at, and its size.

    A file object is uploaded from its current position on, so offsets into
    the data are relative to that start.
    """
    if isinstance(source, bytes):
        yield io.BytesIO(source), 0, len(source)
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:
            yield file, 0, os.fstat(file.fileno()).st_size
    else:
        start = source.tell()
        size = source.seek(0, io.SEEK_END) - start
        source.seek(start)
        yield source, start, size


def _correct_offset(exc: dropbox.exceptions.ApiError) -> int:
    error = exc.error
    if isinstance(error, files.UploadSessionAppendError) and error.is_incorrect_offset():
        return int(error.get_incorrect_offset().correct_offset)
    raise exc


def _translate(name: str, exc: dropbox.exceptions.DropboxException) -> Exception:
    message = f"Dropbox connection {name!r}: {describe_dropbox_error(exc) or type(exc).__name__}"
    if isinstance(exc, dropbox.exceptions.ApiError):
        return RemoteFileError(message)
    return ConnectionFailed(message)
