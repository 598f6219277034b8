"""An embedded FTP/FTPS server for development and tests, on pyftpdlib.

The emulator serves a real directory: a person can look into it and drop files
there for a poller to pick up. pyftpdlib is an asyncore-style server, so it runs
its own IO loop in a worker thread; the Trio side only starts it, waits, and on
cancellation wakes the loop through a socketpair so that it closes every socket
before the thread returns.

Tests make the server misbehave on purpose through :class:`FtpFaults`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from daemon._tls import LocalCertificate, ensure_local_certificate

with warnings.catch_warnings():
    # pyftpdlib is built on asyncore/asynchat, which warn on import under
    # Python 3.11; pytest turns warnings into errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import AsyncChat, IOLoop
    from pyftpdlib.servers import FTPServer

# Read, list, write, delete, rename, mkdir, append, chmod, mtime: a full account.
_ALL_PERMISSIONS = "elradfmwMT"

_pyftpdlib_logger = logging.getLogger("pyftpdlib")


@dataclass(frozen=True)
class FtpEmulatorHandle:
    """Where a running emulator listens; what ``nursery.start(emulator.run)`` returns.

    ``ca_path`` is the CA certificate to give clients when the emulator speaks
    FTPS, else None.
    """

    host: str
    port: int
    root: Path
    user: str
    ca_path: Path | None


class FtpFaults:
    """Failures the emulator injects on request, so tests can exercise a client's recovery.

    Each armed fault fires ``count`` times, then the server behaves again.
    Methods are thread-safe: tests arm faults from Trio while the server
    thread consumes them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (verb, after_execution) -> drops left
        self._drop_on: dict[tuple[str, bool], int] = {}
        self._mid_transfer = 0

    def drop_control_connection(
        self, on_command: str, count: int = 1, *, after_execution: bool = False
    ) -> None:
        """Close the control connection, without a reply, when a client sends ``on_command``.

        ``on_command`` is a verb such as ``"MLSD"``, ``"NLST"``, ``"RETR"``.
        With ``after_execution`` the server first carries the command out (the
        file is deleted, renamed...) and only its reply is lost: the case where
        a client cannot know whether its command took effect.
        """
        key = (on_command.upper(), after_execution)
        with self._lock:
            self._drop_on[key] = self._drop_on.get(key, 0) + count

    def drop_mid_transfer(self, count: int = 1) -> None:
        """On the next ``count`` RETRs send half the file, close the data connection,
        then the control connection, without the closing 226 reply."""
        with self._lock:
            self._mid_transfer += count

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._drop_on.clear()
            self._mid_transfer = 0

    def _take_drop(self, verb: str) -> bool | None:
        """None if the connection stays; else whether to execute the command first."""
        with self._lock:
            for key in ((verb, False), (verb, True)):
                if self._drop_on.get(key, 0):
                    self._drop_on[key] -= 1
                    return key[1]
            return None

    def _take_mid_transfer(self) -> bool:
        with self._lock:
            if self._mid_transfer:
                self._mid_transfer -= 1
                return True
            return False


class _LoginCounter:
    """Successful logins since start, counted in the server thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


class _EmulatorHandlerMixin:
    """Counts logins and applies :class:`FtpFaults`; mixed into pyftpdlib's handler.

    The attributes below are set on the per-emulator subclass built by
    :meth:`FtpEmulator._handler_class`, so two emulators never share state.
    """

    faults: FtpFaults
    logins: _LoginCounter
    _dropping_transfer = False
    _silenced = False

    def on_login(self, username: str) -> None:
        self.logins.add()

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        execute_first = self.faults._take_drop(cmd)
        if execute_first is None:
            super().pre_process_command(line, cmd, arg)  # type: ignore[misc]
            return
        if execute_first:
            self._silenced = True
            super().pre_process_command(line, cmd, arg)  # type: ignore[misc]
        self.close()

    def ftp_RETR(self, file: str) -> str | None:
        # A missing file gets pyftpdlib's 550, and the fault stays armed.
        if not os.path.isfile(file) or not self.faults._take_mid_transfer():
            return super().ftp_RETR(file)  # type: ignore[misc, no-any-return]
        with open(file, "rb") as source:
            data = source.read()
        self._dropping_transfer = True
        self.push_dtp_data(data[: len(data) // 2], cmd="RETR")
        return file

    def respond(self, resp: str, logfun: Any = _pyftpdlib_logger.debug) -> None:
        # A dropped transfer must not be confirmed: swallow its 226 (or 426).
        if self._silenced or (self._dropping_transfer and resp[:3] in ("226", "426")):
            return
        super().respond(resp, logfun)  # type: ignore[misc]

    def _on_dtp_close(self) -> None:
        # pyftpdlib calls this once the data connection has closed; the
        # control connection goes next, as a crashing server's would.
        super()._on_dtp_close()  # type: ignore[misc]
        if self._dropping_transfer:
            self.close()

    if TYPE_CHECKING:  # provided by pyftpdlib's handler

        def close(self) -> None: ...
        def push_dtp_data(self, data: bytes, cmd: str) -> None: ...


class _Waker(AsyncChat):  # type: ignore[misc]
    """The read end of a socketpair in the server's IO loop: any byte closes the loop.

    Closing the loop closes every listener and session socket; with the socket
    map empty, ``IOLoop.loop`` returns and the server thread ends.
    """

    def handle_read(self) -> None:
        self.ioloop.close()


class FtpEmulator:
    """An FTP (or explicit FTPS) server with one account, serving ``root``.

    Arguments:
        root: the served directory, created if absent.
        host, port: where to listen; port 0 picks a free port.
        user, password: the only account, with full permissions on ``root``.
        tls: speak explicit FTPS (AUTH TLS) with a certificate from the local CA
            under ``tls_dir`` (default ``root.parent / "tls"``).
        passive_ports: restrict passive data ports, e.g. for a firewall.
        mlst: announce and serve MLST/MLSD; False imitates an older server.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "hotwire",
        password: str,
        tls: bool = False,
        tls_dir: Path | None = None,
        passive_ports: range | None = None,
        mlst: bool = True,
    ) -> None:
        self.root = root
        self.host = host
        self.port = port
        self.user = user
        self._password = password
        self.tls = tls
        self.tls_dir = tls_dir if tls_dir is not None else root.parent / "tls"
        self.passive_ports = passive_ports
        self.mlst = mlst
        self.faults = FtpFaults()
        self._logins = _LoginCounter()

    def __repr__(self) -> str:
        scheme = "ftps" if self.tls else "ftp"
        return f"<FtpEmulator {scheme}://{self.user}@{self.host}:{self.port} root={self.root}>"

    @property
    def logins(self) -> int:
        """Successful logins since the emulator was created."""
        return self._logins.value

    async def run(
        self, *, task_status: trio.TaskStatus[FtpEmulatorHandle] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled.

        ``await nursery.start(emulator.run)`` returns an :class:`FtpEmulatorHandle`
        once the socket listens. On cancellation the server closes every
        connection and its thread ends before this returns.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        # Making a certificate takes a while (key generation): not on the Trio thread.
        certificate = (
            await trio.to_thread.run_sync(ensure_local_certificate, self.tls_dir)
            if self.tls
            else None
        )
        handler = self._handler_class(certificate)
        if _pyftpdlib_logger.level == logging.NOTSET:
            _pyftpdlib_logger.setLevel(logging.WARNING)
        # With a handler of its own, pyftpdlib does not install a stderr one.
        if not _pyftpdlib_logger.handlers:
            _pyftpdlib_logger.addHandler(logging.NullHandler())
        ioloop = IOLoop.factory()
        wake_send, wake_recv = socket.socketpair()
        try:
            server = FTPServer((self.host, self.port), handler, ioloop=ioloop)
            _Waker(wake_recv, ioloop)
            host, port = server.address
            handle = FtpEmulatorHandle(
                host=host,
                port=port,
                root=self.root,
                user=self.user,
                ca_path=certificate.ca_path if certificate else None,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_wake_when_cancelled, wake_send)
                task_status.started(handle)
                # One thread of our own; it returns only once the loop is closed.
                await trio.to_thread.run_sync(
                    ioloop.loop,
                    limiter=trio.CapacityLimiter(1),
                    thread_name=_thread_name(handle),
                )
                nursery.cancel_scope.cancel()
        finally:
            # The thread has ended (run_sync cannot abandon it), so closing here
            # is safe; it frees the sockets if the loop never ran or crashed.
            ioloop.close()
            wake_send.close()
            wake_recv.close()

    def _handler_class(self, certificate: LocalCertificate | None) -> type[FTPHandler]:
        """A handler class for this emulator alone, serving FTPS with ``certificate``
        if given: pyftpdlib configures handlers through class attributes."""
        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self._password, str(self.root), perm=_ALL_PERMISSIONS)
        attributes: dict[str, Any] = {
            "authorizer": authorizer,
            "faults": self.faults,
            "logins": self._logins,
            "banner": "Hotwire FTP emulator ready.",
            # Tests log in with wrong passwords; answer at once, not after 3 s.
            "auth_failed_timeout": 0,
            "passive_ports": list(self.passive_ports) if self.passive_ports else None,
        }
        base: type[FTPHandler] = FTPHandler
        if certificate is not None:
            base = TLS_FTPHandler
            attributes |= {
                "certfile": str(certificate.cert_path),
                "keyfile": str(certificate.key_path),
                "ssl_context": None,  # TLS_FTPHandler caches its context per class
                # As a strict FTPS server: clients must really encrypt both channels.
                "tls_control_required": True,
                "tls_data_required": True,
            }
        if not self.mlst:
            attributes["proto_cmds"] = {
                verb: spec for verb, spec in base.proto_cmds.items() if verb not in ("MLST", "MLSD")
            }
        return type("FtpEmulatorHandler", (_EmulatorHandlerMixin, base), attributes)


def _thread_name(handle: FtpEmulatorHandle) -> str:
    return f"FTP emulator {handle.host}:{handle.port}"


async def _wake_when_cancelled(wake_send: socket.socket) -> None:
    try:
        await trio.sleep_forever()
    finally:
        # The loop may already be gone (it crashed); then nothing needs waking.
        with contextlib.suppress(OSError):
            wake_send.send(b"\0")
