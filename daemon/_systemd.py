"""systemd integration: sd_notify messages, the watchdog, socket activation.

The protocols are small enough to speak directly, so there is no dependency on
libsystemd. Everything degrades to a no-op outside systemd: without
``$NOTIFY_SOCKET`` :func:`notify` returns False, without ``$WATCHDOG_USEC`` the
:class:`Watchdog` returns at once, without ``$LISTEN_FDS`` :func:`listen_fds`
returns an empty list.
"""

from __future__ import annotations

import atexit
import os
import socket
import time
from collections.abc import Callable

import structlog
import trio

from daemon.exceptions import ConfigError

__all__ = [
    "READY",
    "STOPPING",
    "WATCHDOG",
    "Notifier",
    "Watchdog",
    "listen_fds",
    "notify",
    "reloading_message",
    "status_message",
    "watchdog_interval",
]

log = structlog.get_logger(__name__)

READY = "READY=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"

# sd_listen_fds(3): passed descriptors start right after stdin, stdout, stderr.
_LISTEN_FDS_START = 3


def status_message(text: str) -> str:
    """Return ``STATUS=<text>``, the line ``systemctl status`` shows.

    Newlines would start a new assignment in the datagram, so they become spaces.
    """
    return "STATUS=" + " ".join(text.splitlines())


def reloading_message() -> str:
    """Return ``RELOADING=1`` with the ``MONOTONIC_USEC`` systemd wants next to it.

    systemd uses the timestamp to tell this reload from an earlier one; send
    :data:`READY` when the reload is over.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return f"RELOADING=1\nMONOTONIC_USEC={usec}"


class Notifier:
    """A datagram socket to one sd_notify address, opened on first use.

    ``address`` is the value of ``$NOTIFY_SOCKET``: an absolute path, or a
    name starting with ``@`` in the abstract namespace. None, empty or any
    other form disables sending.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._target: str | None = None
        if self.address is not None and self.address[0] in "/@":
            # A leading "@" means the abstract namespace, spelt with a NUL byte.
            self._target = "\0" + self.address[1:] if self.address[0] == "@" else self.address
        elif self.address is not None:
            log.warning("sd_notify_unsupported_address", socket=self.address)
        self._socket: socket.socket | None = None
        self._failing = False

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; return whether it was sent.

        Never blocks (the socket is non-blocking, so a full queue fails at once)
        and never raises: a failure is logged once, then again only after a
        send has succeeded in between, so a dead socket does not flood the log.
        """
        if self._target is None or not lines:
            return False
        payload = "\n".join(lines).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(payload, self._target)
        except OSError as exc:
            if not self._failing:
                log.warning("sd_notify_failed", socket=self.address, error=str(exc))
            self._failing = True
            return False
        self._failing = False
        return True

    def close(self) -> None:
        """Close the socket; a later :meth:`send` opens a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


_notifier = Notifier(None)


def notify(*lines: str) -> bool:
    """Send sd_notify ``lines`` (``READY=1``, ``STATUS=...``) to ``$NOTIFY_SOCKET``.

    Returns False without doing anything when the variable is unset, and False
    when sending failed (logged, never raised). The socket is opened once and
    reused while ``$NOTIFY_SOCKET`` keeps its value. The variable is left in
    the environment: with ``NotifyAccess=main`` systemd ignores messages
    from child processes anyway.
    """
    global _notifier
    address = os.environ.get("NOTIFY_SOCKET") or None
    if address != _notifier.address:
        _notifier.close()
        _notifier = Notifier(address)
    return _notifier.send(*lines)


# Close whichever socket is current when the interpreter exits.
atexit.register(lambda: _notifier.close())


def _environ_int(name: str) -> int | None:
    """Read a non-negative integer systemd put in the environment, or None if unset."""
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdecimal():
        raise ConfigError(
            f"environment variable {name}={value!r} is not a non-negative integer;"
            " systemd sets it to one, so something else has changed it"
        )
    return int(value)


def watchdog_interval() -> float | None:
    """Return the seconds between watchdog pings systemd expects, or None if it expects none.

    That is half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3) advises.
    None when the variable is unset or zero, or when ``$WATCHDOG_PID`` names
    another process (the pings are for the main process, not its children).

    Raises ConfigError when either variable is not an integer.
    """
    usec = _environ_int("WATCHDOG_USEC")
    pid = _environ_int("WATCHDOG_PID")
    if not usec or (pid is not None and pid != os.getpid()):
        return None
    return usec / 2_000_000


class Watchdog:
    """Pings systemd's watchdog from the Trio loop while the daemon is healthy.

    The pings come from ``trio.sleep`` in the event loop itself, not from a
    thread: a loop that is stuck (a blocking call on the Trio thread, a task
    that never yields) stops them, and systemd kills and restarts the service
    after ``WatchdogSec=``. ``is_healthy``, when given, is called before each
    ping; while it returns False no ping is sent, so the supervisor can let
    systemd restart the service when a worker it needs is gone. It runs on
    the Trio thread, must be fast and must not raise.
    """

    def __init__(self, is_healthy: Callable[[], bool] | None = None) -> None:
        self._is_healthy = is_healthy

    async def run(
        self, *, task_status: trio.TaskStatus[float | None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Ping every :func:`watchdog_interval` seconds until cancelled.

        ``nursery.start`` returns the interval in seconds, or None when systemd
        expects no pings; in that case this returns right away, so the task
        costs nothing. Raises ConfigError for malformed watchdog variables.
        """
        interval = watchdog_interval()
        task_status.started(interval)
        if interval is None:
            return
        log.info("watchdog_started", interval=interval)
        healthy = True
        while True:
            now_healthy = self._is_healthy is None or self._is_healthy()
            if now_healthy:
                notify(WATCHDOG)
            if now_healthy != healthy:
                if now_healthy:
                    log.info("watchdog_resumed")
                else:
                    log.warning("watchdog_withheld", reason="not healthy")
                healthy = now_healthy
            await trio.sleep(interval)


def listen_fds() -> list[socket.socket]:
    """Return the sockets systemd passed by socket activation, like sd_listen_fds(unset=1).

    Reads ``$LISTEN_FDS`` and ``$LISTEN_PID``; descriptors start at 3. The
    variables (and ``$LISTEN_FDNAMES``) are removed from the environment in
    any case, so child processes do not take the sockets for theirs. Returns
    an empty list outside socket activation or when ``$LISTEN_PID`` names
    another process. Family and type come from the descriptors themselves;
    they are marked close-on-exec.

    The returned objects own the descriptors: keep them alive while the
    descriptors are in use (a collected socket closes its fd). To hand one to
    hypercorn, pass it in ``hypercorn.utils.Sockets`` to ``worker_serve``, or
    use ``bind = [f"fd://{sock.detach()}"]`` so hypercorn becomes the owner.

    Raises ConfigError when a variable is malformed or a descriptor is not a socket.
    """
    try:
        pid = _environ_int("LISTEN_PID")
        count = _environ_int("LISTEN_FDS")
    finally:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    if pid != os.getpid() or not count:
        return []
    sockets = []
    for fd in range(_LISTEN_FDS_START, _LISTEN_FDS_START + count):
        try:
            os.set_inheritable(fd, False)
            sockets.append(socket.socket(fileno=fd))
        except OSError as exc:
            raise ConfigError(
                f"file descriptor {fd} passed by systemd (LISTEN_FDS={count}) is not an open"
                f" socket ({exc.strerror}); expected only ListenStream= sockets"
            ) from exc
    return sockets
