"""The outgoing FTP/FTPS connection: a pool of logged-in ftplib sessions.

Zato opens a new FTP session for every call; we keep up to ``pool_size``
logged-in sessions and reuse them, which saves a TCP (and TLS) handshake and a
login per call. Pooled sessions go stale (the server's idle timeout, a NAT that
forgot us), so a session that fails is discarded and an operation whose repeat
is harmless runs once more on a fresh session.

The API follows Zato's file-system style (``listdir``, ``getbytes``,
``setbytes``, ``remove``...). The methods block, for sync services running in
worker threads; every one has an ``a``-prefixed coroutine twin (``alistdir``,
``agetbytes``...) for async services, which runs the blocking method in a
thread, at most ``pool_size`` at a time.
"""

from __future__ import annotations

import ftplib
import functools
import io
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import structlog
import trio

from daemon.connections import _ftp_session as proto
from daemon.connections._ftp_session import FileInfo, Session
from daemon.connections._part_file import replaced_when_complete
from daemon.exceptions import ConnectionFailed, RemoteFileError

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Transfers move this much per socket call: memory stays flat whatever the file size.
_BLOCK_SIZE = 64 * 1024
# A session idle for longer is probed with NOOP before use, so that even an
# operation we never retry (rename) does not fail on a session the server
# closed while it sat in the pool.
_PROBE_AFTER = 15.0
LocalFile = str | Path | IO[bytes]


class FtpConnection:
    """A named FTP or explicit-FTPS (AUTH TLS, protected data) peer, with pooled sessions.

    Arguments are those of the ``[outgoing.ftp."name"]`` configuration.
    ``timeout`` bounds every socket operation (connect, each reply, each data
    block), so no call hangs. ``ca_certs`` is the CA bundle to verify an FTPS
    server with; the system's CAs otherwise.

    Errors: :class:`~daemon.exceptions.ConnectionFailed` when the server cannot
    be reached, refuses the login or drops the connection;
    :class:`~daemon.exceptions.RemoteFileError` when it refuses the operation
    (``550 No such file``). Messages name the connection, host:port and the
    server's reply, never the password.
    """

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int = 21,
        user: str = "anonymous",
        password: str = "",
        tls: bool = False,
        passive: bool = True,
        timeout: float = 30.0,
        pool_size: int = 4,
        encoding: str = "utf-8",
        ca_certs: str | Path | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError(
                f"FTP connection {name!r}: pool_size must be 1 or more, not {pool_size}"
            )
        self.name = name
        self.host = host
        self.port = port
        self.user = user
        self._password = password
        self.tls = tls
        self.passive = passive
        self.timeout = timeout
        self.pool_size = pool_size
        self.encoding = encoding
        self._ssl_context = ssl.create_default_context(cafile=ca_certs) if tls else None
        self._idle: list[Session] = []  # most recently used last: the least likely stale
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._limiter = trio.CapacityLimiter(pool_size)
        self._closed = False

    def __repr__(self) -> str:
        scheme = "ftps" if self.tls else "ftp"
        return f"<FtpConnection {self.name!r} {scheme}://{self.user}@{self.host}:{self.port}>"

    def describe(self) -> dict[str, Any]:
        """For the admin API: settings, and the password only as set or unset."""
        return {
            "kind": "outgoing.ftp",
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "tls": self.tls,
            "passive": self.passive,
            "pool_size": self.pool_size,
            "secrets": {"password": "set" if self._password else "unset"},
        }

    # --- the file-system API (blocking)

    def listdir(self, path: str = ".") -> list[str]:
        """Names in the directory ``path``, sorted, without ``.`` and ``..``."""
        names = self._run(f"listdir {path!r}", lambda s: proto.list_names(s, path), retry=True)
        return sorted(names)

    def listdir_info(self, path: str = ".") -> dict[str, FileInfo]:
        """Names in the directory ``path`` with their size and mtime, in one MLSD round trip.

        A server without MLSD costs one NLST plus a SIZE and MDTM per entry.
        """
        return self._run(f"listdir {path!r}", lambda s: proto.list_info(s, path), retry=True)

    def getbytes(self, path: str) -> bytes:
        """The whole content of the file ``path``."""
        buffer = io.BytesIO()
        self._retrieve(f"getbytes {path!r}", path, buffer)
        return buffer.getvalue()

    def setbytes(self, path: str, data: bytes) -> None:
        """Create or replace the file ``path`` with ``data``."""
        self._store(f"setbytes {path!r}", path, io.BytesIO(data))

    def download(self, path: str, local_file: LocalFile) -> None:
        """Stream the file ``path`` into ``local_file`` (a path, or a binary file open for writing).

        A local path is written as ``<name>.part`` and renamed when complete, so
        a failed download never leaves a truncated file under the real name.
        """
        if not isinstance(local_file, str | Path):
            self._retrieve(f"download {path!r}", path, local_file)
            return
        with replaced_when_complete(local_file) as part, part.open("wb") as stream:
            self._retrieve(f"download {path!r}", path, stream)

    def upload(self, local_file: LocalFile, path: str) -> None:
        """Stream ``local_file`` (a path, or a binary file open for reading) into ``path``."""
        if not isinstance(local_file, str | Path):
            self._store(f"upload {path!r}", path, local_file)
            return
        with Path(local_file).open("rb") as stream:
            self._store(f"upload {path!r}", path, stream)

    def remove(self, path: str) -> None:
        """Delete the file ``path``.

        Retried once after a dropped session; on that retry a file that is no
        longer there counts as removed, since the first attempt may have
        deleted it before the connection broke.
        """

        def delete(s: Session) -> None:
            s.ftp.delete(path)

        def gone(s: Session) -> bool:
            return proto.info_or_none(s, path) is None

        self._run(f"remove {path!r}", _settled_on_retry(delete, gone), retry=True)

    def rename(self, src: str, dst: str) -> None:
        """Rename or move ``src`` to ``dst``.

        Never retried: after a dropped session we cannot tell whether the
        server renamed, and a second RNFR/RNTO could move another file.
        """

        def rename(s: Session) -> None:
            s.ftp.rename(src, dst)

        self._run(f"rename {src!r} to {dst!r}", rename, retry=False)

    move = rename

    def exists(self, path: str) -> bool:
        """Whether a file or directory ``path`` exists."""
        found = self._run(f"exists {path!r}", lambda s: proto.info_or_none(s, path), retry=True)
        return found is not None

    def getinfo(self, path: str) -> FileInfo:
        """Size and modification time of ``path`` (MLST, else SIZE and MDTM)."""
        return self._run(f"getinfo {path!r}", lambda s: proto.info(s, path), retry=True)

    def makedir(self, path: str) -> None:
        """Create the directory ``path``; on a retry, an existing directory counts as made."""

        def make(s: Session) -> None:
            s.ftp.mkd(path)

        def made(s: Session) -> bool:
            entry = proto.info_or_none(s, path)
            return entry is not None and entry.is_dir

        self._run(f"makedir {path!r}", _settled_on_retry(make, made), retry=True)

    def close(self) -> None:
        """Log out of every pooled session; sessions in use close when they come back.

        Later calls raise :class:`ConnectionFailed`.
        """
        with self._lock:
            self._closed = True
            sessions, self._idle = self._idle, []
        for session in sessions:
            self._quit(session)

    # --- the same API as coroutines, each running its blocking twin in a worker thread

    @staticmethod
    def _in_thread(
        method: Callable[Concatenate[FtpConnection, P], T],
    ) -> Callable[Concatenate[FtpConnection, P], Coroutine[Any, Any, T]]:
        @functools.wraps(method)
        async def in_thread(self: FtpConnection, /, *args: P.args, **kwargs: P.kwargs) -> T:
            call = functools.partial(method, self, *args, **kwargs)
            return await trio.to_thread.run_sync(call, limiter=self._limiter)

        in_thread.__name__ = in_thread.__qualname__ = "a" + method.__name__
        return in_thread

    alistdir = _in_thread(listdir)
    alistdir_info = _in_thread(listdir_info)
    agetbytes = _in_thread(getbytes)
    asetbytes = _in_thread(setbytes)
    adownload = _in_thread(download)
    aupload = _in_thread(upload)
    aremove = _in_thread(remove)
    arename = _in_thread(rename)
    amove = _in_thread(move)
    aexists = _in_thread(exists)
    agetinfo = _in_thread(getinfo)
    amakedir = _in_thread(makedir)
    aclose = _in_thread(close)

    # --- transfers

    def _retrieve(self, what: str, path: str, stream: IO[bytes]) -> None:
        # A stream we can rewind can take the retry; one we cannot must not
        # receive the same bytes twice.
        rewind = _rewinder(stream, truncate=True)

        def retrieve(s: Session) -> None:
            if rewind:
                rewind()
            s.ftp.retrbinary(f"RETR {path}", stream.write, blocksize=_BLOCK_SIZE)

        self._run(what, retrieve, retry=rewind is not None)

    def _store(self, what: str, path: str, stream: IO[bytes]) -> None:
        # Storing the whole file again gives the same result: retried when
        # the source can be read again from its start.
        rewind = _rewinder(stream, truncate=False)

        def store(s: Session) -> None:
            if rewind:
                rewind()
            s.ftp.storbinary(f"STOR {path}", stream, blocksize=_BLOCK_SIZE)

        self._run(what, store, retry=rewind is not None)

    # --- running an operation on a pooled session

    def _run(self, what: str, operation: Callable[[Session], T], *, retry: bool) -> T:
        """Run ``operation`` on a pooled session; if it broke and ``retry``, once more."""
        for attempt in (1, 2):
            with self._slots:  # at most pool_size sessions, whoever calls
                session = self._checkout()
                try:
                    result = operation(session)
                except BaseException as exc:
                    if proto.refused(exc):  # a clean reply: the session stays usable
                        self._checkin(session)
                        raise RemoteFileError(
                            f"{self._peer()}: {what}: {exc}", code=proto.reply_code(exc)
                        ) from exc
                    session.ftp.close()  # mid-command: its state is unknown
                    if not proto.broke(exc):
                        raise
                    again = retry and attempt == 1
                    log.warning(
                        "ftp_session_broken",
                        connection=self.name,
                        operation=what,
                        error=proto.describe(exc),
                        retrying=again,
                    )
                    if again:
                        continue
                    raise ConnectionFailed(
                        f"{self._peer()}: {what}: {proto.describe(exc)}"
                    ) from exc
                self._checkin(session)
                return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _checkout(self) -> Session:
        while True:
            with self._lock:
                if self._closed:
                    raise ConnectionFailed(f"{self._peer()}: the connection is closed")
                if not self._idle:
                    break
                session = self._idle.pop()
            if time.monotonic() - session.idle_since < _PROBE_AFTER:
                return session
            try:
                session.ftp.voidcmd("NOOP")
            except proto.FAILURES:
                session.ftp.close()  # gone stale in the pool: try the next one
                continue
            return session
        return self._open()

    def _checkin(self, session: Session) -> None:
        session.idle_since = time.monotonic()
        with self._lock:
            if not self._closed:
                self._idle.append(session)
                return
        self._quit(session)

    def _open(self) -> Session:
        ftp: ftplib.FTP
        if self._ssl_context is not None:
            ftp = ftplib.FTP_TLS(
                context=self._ssl_context, timeout=self.timeout, encoding=self.encoding
            )
        else:
            ftp = ftplib.FTP(timeout=self.timeout, encoding=self.encoding)
        try:
            ftp.connect(self.host, self.port)
            ftp.login(self.user, self._password)  # FTP_TLS sends AUTH TLS first
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.set_pasv(self.passive)
            mlst = proto.announces_mlst(ftp)
        except proto.FAILURES as exc:
            ftp.close()
            raise ConnectionFailed(f"{self._peer()}: cannot log in: {proto.describe(exc)}") from exc
        except BaseException:
            ftp.close()
            raise
        log.debug("ftp_session_opened", connection=self.name, host=self.host, port=self.port)
        return Session(ftp=ftp, mlst=mlst, idle_since=time.monotonic())

    def _quit(self, session: Session) -> None:
        try:
            session.ftp.quit()
        except proto.FAILURES:
            pass  # the server is gone or unhappy: closing is all that is left to do
        finally:
            session.ftp.close()

    def _peer(self) -> str:
        return f"FTP connection {self.name!r} to {self.host}:{self.port}"


# --- retry helpers


def _rewinder(stream: IO[bytes], *, truncate: bool) -> Callable[[], None] | None:
    """A function that puts ``stream`` back where it is now, or None if it cannot seek."""
    try:
        if not stream.seekable():
            return None
        start = stream.tell()
    except (OSError, ValueError):
        return None

    def rewind() -> None:
        stream.seek(start)
        if truncate:
            stream.truncate()

    return rewind


def _settled_on_retry(
    operation: Callable[[Session], None], done: Callable[[Session], bool]
) -> Callable[[Session], None]:
    """``operation`` for a retried ``_run``, where a refusal on the retry counts as
    success if ``done``: the first attempt may have taken effect before its
    session broke (a DELE whose reply was lost)."""
    attempts = 0

    def attempt(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        try:
            operation(session)
        except ftplib.error_perm:
            if attempts == 1 or not done(session):
                raise

    return attempt
