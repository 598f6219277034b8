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
