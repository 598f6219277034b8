"""Offline peers for development and tests: a Dropbox API emulator, an FTP server."""

from __future__ import annotations

from ._dropbox import DropboxEmulator, DropboxEmulatorHandle, serve_standalone
from ._dropbox_faults import Faults, RecordedRequest
from ._dropbox_routes import MAX_UPLOAD_SIZE
from ._embedded import EmulatorEndpoints, run_emulators
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
