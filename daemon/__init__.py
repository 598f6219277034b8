"""Hotwire: an integration daemon on Trio.

Services are small classes dropped into ``services/`` and hot-deployed; they
are reached by name from REST channels, the scheduler, the admin API and each
other. This package is the daemon; service authors need only `Service`.
"""

from __future__ import annotations

from ._config import Config, load_config
from ._deployer import Deployer, FileState
from ._router import Router, new_cid
from ._secrets import Secret
from ._service import Bunch, Request, Resources, Response, Service
from ._version import __version__
from .exceptions import (
    ConfigError,
    DeployError,
    HotwireError,
    InvalidInput,
    InvalidOutput,
    InvokeError,
    InvokeTimeout,
    SecretError,
    ServiceNotFound,
    ServiceUnavailable,
)
from .main import Daemon, main

__all__ = [
    "Bunch",
    "Config",
    "ConfigError",
    "Daemon",
    "DeployError",
    "Deployer",
    "FileState",
    "HotwireError",
    "InvalidInput",
    "InvalidOutput",
    "InvokeError",
    "InvokeTimeout",
    "Request",
    "Resources",
    "Response",
    "Router",
    "Secret",
    "SecretError",
    "Service",
    "ServiceNotFound",
    "ServiceUnavailable",
    "__version__",
    "load_config",
    "main",
    "new_cid",
]
