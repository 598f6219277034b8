"""Outgoing connections: the clients services use to talk to their peers."""

from __future__ import annotations

from ._dropbox import DropboxConnection, DropboxEndpoint, describe_dropbox_error
from ._dropbox_client import build_dropbox_client, dropbox_session
from ._ftp import FtpConnection
from ._ftp_session import FileInfo
from ._registry import Connections, FtpEndpoint

__all__ = [
    "Connections",
    "DropboxConnection",
    "DropboxEndpoint",
    "FileInfo",
    "FtpConnection",
    "FtpEndpoint",
    "build_dropbox_client",
    "describe_dropbox_error",
    "dropbox_session",
]
