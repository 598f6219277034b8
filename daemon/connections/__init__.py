"""Outgoing connections: the clients services use to talk to their peers.

The Dropbox names are loaded on first use (PEP 562): the SDK costs about
30 MB, which a daemon without a Dropbox connection should not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from ._errors import describe_dropbox_error
from ._ftp import FtpConnection
from ._ftp_session import FileInfo
from ._registry import Connections
from ._registry_types import DropboxEndpoint, FtpEndpoint

if TYPE_CHECKING:
    from ._dropbox import DropboxConnection
    from ._dropbox_client import build_dropbox_client, dropbox_session

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

_LAZY = {
    "DropboxConnection": "._dropbox",
    "build_dropbox_client": "._dropbox_client",
    "dropbox_session": "._dropbox_client",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
