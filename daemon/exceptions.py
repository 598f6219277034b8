"""Hotwire's exceptions.

Each class says when it is raised. Messages name the bad input and the form
that was expected, so that whoever reads a log line or an HTTP error body can
fix the cause without reading our source.
"""

from __future__ import annotations


class HotwireError(Exception):
    """Base class of every error Hotwire raises on purpose."""


class ConfigError(HotwireError):
    """The configuration file is missing, malformed, or fails validation.

    The message names the file, the key path (``channels.rest[0].path``) and
    what was expected there.
    """


class SecretError(ConfigError):
    """A secret reference (``env:``, ``file:``, ``cred:``) cannot be resolved.

    The message names the reference, never the secret's value.
    """


class DeployError(HotwireError):
    """A service file cannot be deployed; the previous version keeps serving.

    ``details`` holds the traceback (or the message again) for the admin API.
    """

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.details = details or message


class InvokeError(HotwireError):
    """Base class of the errors a caller of ``invoke`` receives."""


class ServiceNotFound(InvokeError, LookupError):
    """``invoke`` named a service that is not deployed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no service named {name!r} is deployed")
        self.name = name


class InvalidInput(InvokeError, ValueError):
    """A message lacks SimpleIO's required input, or its payload has the wrong shape.

    ``missing`` lists the required fields that were absent.
    """

    def __init__(self, message: str, *, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing


class InvalidOutput(InvokeError):
    """A service's response lacks a field its SimpleIO declares as required output."""


class InvokeTimeout(InvokeError, TimeoutError):
    """The target did not answer within the caller's timeout; its work was cancelled."""

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"service {name!r} did not answer within {timeout:g} s")
        self.name = name
        self.timeout = timeout


class ServiceUnavailable(InvokeError):
    """The target was undeployed or the daemon is stopping before the message ran."""


class OutboxUnavailable(HotwireError):
    """The outbox cannot durably accept a message (disk full, spool or database not writable).

    Nothing of the message was kept. ``reason`` is a short fixed phrase such as
    ``"disk full"`` or ``"spool directory not writable"``, for metrics and HTTP
    bodies; the message adds the path involved.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"outbox unavailable: {reason} ({detail})")
        self.reason = reason


class ConnectionFailed(HotwireError):
    """An outgoing connection cannot reach, log in to or keep talking to its peer.

    Raised for a refused or timed-out connection, a failed TLS handshake, a
    rejected login, or a peer that dropped the connection (after the one retry
    that idempotent operations get). The message names the connection, the
    peer's host:port and the peer's reply or the socket error, never a secret.
    """


class RemoteFileError(HotwireError):
    """The peer refused a file operation while the connection itself is fine.

    For example FTP's ``550 No such file or directory``. ``code`` is the
    peer's numeric reply code when it gave one (550), else None.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class JobNotFound(HotwireError, LookupError):
    """A scheduler operation named a job that does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no scheduler job named {name!r}")
        self.name = name


class JobConflict(HotwireError):
    """A scheduler operation clashes with the job's current state.

    For example: adding a job whose name is taken, editing or deleting a job
    that comes from the configuration file, or running a job that is running.
    """
