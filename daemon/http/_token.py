"""The admin API's bearer token: from the configuration, or generated once.

Without ``[admin] token`` (or with an ``env:`` reference to an unset
variable), a random token is generated on first start into
``<state>/admin.token`` with mode 0600 and reused afterwards; the log names
the file, never the token. ``hotwire invoke`` reads it from the same place.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import structlog

from .._config import Config

__all__ = ["admin_token", "token_path"]

log = structlog.get_logger(__name__)


def token_path(config: Config) -> Path:
    return config.paths.state / "admin.token"


def admin_token(config: Config, *, create: bool = True) -> str | None:
    """The configured token, else the one in the state directory (made if ``create``)."""
    if config.admin.token is not None:
        return config.admin.token.reveal()
    path = token_path(config)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        if not create:
            return None
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it a moment ago
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    log.info("admin_token_generated", path=str(path))
    return token
