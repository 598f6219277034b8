"""Offline peers for development and tests: a Dropbox API emulator, an FTP server.

Everything but `run_emulators` loads on first use (PEP 562): the emulators
pull in hypercorn's TLS, the Dropbox SDK's serializers and pyftpdlib, which a
daemon with its emulators off should not carry in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from ._embedded import EmulatorEndpoints, run_emulators

if TYPE_CHECKING:
    from ._dropbox import DropboxEmulator, DropboxEmulatorHandle, serve_standalone
    from ._dropbox_faults import Faults, RecordedRequest
    from ._dropbox_routes import MAX_UPLOAD_SIZE
    from ._ftp import FtpEmulator, FtpEmulatorHandle, FtpFaults

__all__ = [
    "MAX_UPLOAD_SIZE",
    "DropboxEmulator",
    "DropboxEmulatorHandle",
    "EmulatorEndpoints",
    "Faults",
    "FtpEmulator",
    "FtpEmulatorHandle",
    "FtpFaults",
    "RecordedRequest",
    "run_emulators",
    "serve_standalone",
]

_LAZY = {
    "DropboxEmulator": "._dropbox",
    "DropboxEmulatorHandle": "._dropbox",
    "serve_standalone": "._dropbox",
    "Faults": "._dropbox_faults",
    "RecordedRequest": "._dropbox_faults",
    "MAX_UPLOAD_SIZE": "._dropbox_routes",
    "FtpEmulator": "._ftp",
    "FtpEmulatorHandle": "._ftp",
    "FtpFaults": "._ftp",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
