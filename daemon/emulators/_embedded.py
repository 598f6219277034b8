"""Starting the emulators the configuration enables, inside the daemon.

Connections with ``emulator = true`` are pointed at what this returns, so the
default configuration runs the whole reference flow offline. Emulators are
a once-per-machine role: with several worker processes one owner runs them.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .._config import Config
from ..connections import DropboxEndpoint, FtpEndpoint

__all__ = ["EmulatorEndpoints", "run_emulators"]


@dataclass(frozen=True)
class EmulatorEndpoints:
    """Where the running emulators are, for ``emulator = true`` connections."""

    dropbox: DropboxEndpoint | None = None
    ftp: FtpEndpoint | None = None

    def to_json(self) -> str:
        """These endpoints as JSON, for worker processes (`from_json`)."""

        def plain(endpoint: DropboxEndpoint | FtpEndpoint | None) -> dict[str, Any] | None:
            if endpoint is None:
                return None
            fields = dataclasses.asdict(endpoint)
            return {k: str(v) if isinstance(v, Path) else v for k, v in fields.items()}

        return json.dumps({"dropbox": plain(self.dropbox), "ftp": plain(self.ftp)})

    @classmethod
    def from_json(cls, text: str) -> EmulatorEndpoints:
        raw = json.loads(text)
        dropbox, ftp = raw.get("dropbox"), raw.get("ftp")
        return cls(
            dropbox=DropboxEndpoint(**{**dropbox, "ca_path": Path(dropbox["ca_path"])})
            if dropbox
            else None,
            ftp=FtpEndpoint(**{**ftp, "ca_path": Path(ftp["ca_path"]) if ftp["ca_path"] else None})
            if ftp
            else None,
        )


async def run_emulators(
    config: Config, *, task_status: trio.TaskStatus[EmulatorEndpoints] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the enabled emulators until cancelled; ``nursery.start`` returns their endpoints."""
    state = config.paths.state
    settings = config.emulators
    async with trio.open_nursery() as nursery:
        dropbox = ftp = None
        # Each emulator's module is imported only when it is enabled (memory).
        if settings.dropbox.enabled:
            from ._dropbox import DropboxEmulator

            # A fresh token each start: only this daemon's connections know it.
            token = secrets.token_urlsafe(32)
            emulator = DropboxEmulator(
                settings.dropbox.root or state / "dropbox",
                tls_dir=state / "tls",
                host=settings.dropbox.host,
                port=settings.dropbox.port,
                access_tokens=[token],
            )
            handle = await nursery.start(emulator.run)
            dropbox = DropboxEndpoint(handle.api_host, handle.content_host, handle.ca_path, token)
        if settings.ftp.enabled:
            from ._ftp import FtpEmulator

            password = (
                settings.ftp.password.reveal()
                if settings.ftp.password
                else secrets.token_urlsafe(16)
            )
            ftp_emulator = FtpEmulator(
                settings.ftp.root or state / "ftp",
                host=settings.ftp.host,
                port=settings.ftp.port,
                user=settings.ftp.user,
                password=password,
                tls=settings.ftp.tls,
                tls_dir=state / "tls",
            )
            ftp_handle = await nursery.start(ftp_emulator.run)
            ftp = FtpEndpoint(
                ftp_handle.host, ftp_handle.port, ftp_handle.user, password, ftp_handle.ca_path
            )
        task_status.started(EmulatorEndpoints(dropbox, ftp))
