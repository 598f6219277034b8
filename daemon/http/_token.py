"""The admin API's bearer token: from the configuration, or generated once.

Without ``[admin] token`` (or with an ``env:`` reference to an unset
variable), a random token is generated on first start into
``<state>/admin.token`` with mode 0600 and reused afterwards; the log names
the file, never the token. ``hotwire invoke`` reads it from the same place.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from .._config import Config
from .._private_files import read_or_create_token, read_token

__all__ = ["admin_token", "token_path"]

log = structlog.get_logger(__name__)


def token_path(config: Config) -> Path:
    return config.paths.state / "admin.token"


def admin_token(config: Config, *, create: bool = True) -> str | None:
    """The configured token, else the one in the state directory (made if ``create``)."""
    if config.admin.token is not None:
        return config.admin.token.reveal()
    path = token_path(config)
    if not create:
        return read_token(path)
    token, created = read_or_create_token(path)
    if created:
        log.info("admin_token_generated", path=str(path))
    return token
