"""Where ``emulator = true`` connections go: filled in by the embedded emulators."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DropboxEndpoint", "FtpEndpoint"]


@dataclass(frozen=True)
class DropboxEndpoint:
    """The embedded Dropbox emulator's hosts, CA and the token it accepts."""

    api_host: str
    content_host: str
    ca_path: Path
    token: str


@dataclass(frozen=True)
class FtpEndpoint:
    """The embedded FTP server's address and account."""

    host: str
    port: int
    user: str
    password: str
    ca_path: Path | None
