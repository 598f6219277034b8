"""Every configured outgoing connection, by kind and name, as services see them.

``cloud`` and ``outgoing`` are the namespaces behind ``self.cloud`` and
``self.outgoing``: ``self.cloud.dropbox["My Connection"]``,
``self.outgoing.ftp.get("My FTP Connection")``. Secrets changed through the
admin API are kept under ``<state>/secrets`` (mode 0600) and win over the
configuration from then on, across restarts, as Zato's "change token" does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from .._config import Config, FtpConnectionConfig
from .._private_files import write_private
from .._service import Bunch
from ..exceptions import ConfigError
from ._ftp import FtpConnection
from ._registry_types import DropboxEndpoint, FtpEndpoint

if TYPE_CHECKING:
    from ._dropbox import DropboxConnection

__all__ = ["Connections"]

log = structlog.get_logger(__name__)


class Connections:
    """Builds the configured connections; `close` closes them all."""

    def __init__(
        self,
        config: Config,
        *,
        dropbox_endpoint: DropboxEndpoint | None = None,
        ftp_endpoint: FtpEndpoint | None = None,
    ) -> None:
        self._secrets_dir = config.paths.state / "secrets"
        if config.cloud.dropbox:
            # Imported only when used: the Dropbox SDK is about 30 MB of memory.
            from ._dropbox import DropboxConnection
        self.dropbox: dict[str, DropboxConnection] = {
            name: DropboxConnection(
                name,
                settings,
                endpoint=dropbox_endpoint,
                token=self._stored_secret("cloud.dropbox", name),
            )
            for name, settings in config.cloud.dropbox.items()
        }
        self.ftp = {
            name: _ftp_connection(name, settings, ftp_endpoint)
            for name, settings in config.outgoing.ftp.items()
        }
        self.cloud = Bunch({"dropbox": self.dropbox})
        self.outgoing = Bunch({"ftp": self.ftp})

    def describe(self) -> list[dict[str, Any]]:
        """Each connection's settings for the admin API; secrets as set or unset only."""
        return [c.describe() for c in self.dropbox.values()] + [
            c.describe() for c in self.ftp.values()
        ]

    def set_secret(self, kind: str, name: str, secret: str) -> None:
        """Store a new secret for connection ``kind``/``name`` and apply it now.

        Raises LookupError if there is no such connection.
        """
        if kind != "cloud.dropbox" or name not in self.dropbox:
            raise LookupError(f"no connection {kind}/{name} takes a secret")
        path = self._secret_path(kind, name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, secret.encode())
        self.dropbox[name].set_token(secret)
        log.info("connection_secret_changed", kind=kind, connection=name)

    def close(self) -> None:
        for dropbox in self.dropbox.values():
            dropbox.close()
        for ftp in self.ftp.values():
            ftp.close()

    def _secret_path(self, kind: str, name: str) -> Path:
        # Connection names are free text: hex keeps any name a safe file name.
        return self._secrets_dir / kind / name.encode().hex()

    def _stored_secret(self, kind: str, name: str) -> str | None:
        try:
            return self._secret_path(kind, name).read_text()
        except FileNotFoundError:
            return None


def _ftp_connection(
    name: str, settings: FtpConnectionConfig, endpoint: FtpEndpoint | None
) -> FtpConnection:
    common: dict[str, Any] = {
        "tls": settings.tls,
        "passive": settings.passive,
        "timeout": settings.timeout,
        "pool_size": settings.pool_size,
        "encoding": settings.encoding,
    }
    if settings.emulator:
        if endpoint is None:
            # As for Dropbox: enabled by the configuration, but not running.
            raise ConfigError(
                f"outgoing.ftp.{name!r}: emulator = true, but the FTP emulator is not running"
                " (enabling [emulators.ftp] takes a restart)"
            )
        return FtpConnection(
            name,
            host=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            password=endpoint.password,
            ca_certs=endpoint.ca_path,
            **{**common, "tls": endpoint.ca_path is not None},
        )
    return FtpConnection(
        name,
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password.reveal() if settings.password else "",
        ca_certs=settings.ca_certs,
        **common,
    )
