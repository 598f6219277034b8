"""An embedded Dropbox API emulator over HTTPS, for development and tests.

The real ``dropbox`` SDK talks to it as to Dropbox (see
``daemon.connections.build_dropbox_client``): it runs inside the daemon's Trio
process, stores files under a directory a person can look at, checks what the
real API checks (paths, write modes, content hashes, upload size, session
offsets, tokens) and answers with the real API's shapes. Tests inject faults
through ``DropboxEmulator.faults`` and read ``DropboxEmulator.requests``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import hypercorn
import hypercorn.trio
import structlog
import trio

from .._private_files import read_or_create_token
from .._tls import ensure_local_certificate
from ._dropbox_auth import Tokens
from ._dropbox_faults import REQUEST_RECORD_SIZE, Faults, RecordedRequest
from ._dropbox_http import DropboxApp
from ._dropbox_relay import Relay
from ._dropbox_routes import MAX_UPLOAD_SIZE, Routes
from ._dropbox_store import Store

log = structlog.get_logger(__name__)

_FILE_THREADS = 4


@dataclass(frozen=True)
class DropboxEmulatorHandle:
    """Where a running emulator listens; what ``nursery.start(emulator.run)`` returns.

    ``api_host`` and ``content_host`` are ``host:port`` pairs for the SDK's host
    map (RPC routes and token refresh go to the first, uploads and downloads to
    the second); ``ca_path`` is the CA certificate clients must trust.
    """

    api_host: str
    content_host: str
    ca_path: Path

    @property
    def base_url(self) -> str:
        """The URL of the API host, e.g. ``https://127.0.0.1:8443``."""
        return f"https://{self.api_host}"

    @property
    def content_url(self) -> str:
        """The URL of the content host."""
        return f"https://{self.content_host}"


class DropboxEmulator:
    """A Dropbox API peer serving the files under ``root``.

    Arguments:
        root: where files are stored, at their Dropbox path (created if absent).
        tls_dir: where the local CA and server certificate live (see daemon._tls).
        host: the address to listen on.
        port: the API port; 0 picks free ports. The content host listens on
            ``port + 1`` (or on a free port when ``port`` is 0).
        access_tokens: bearer tokens that are always valid.
        apps: app key -> app secret, for refreshing tokens with oauth2/token.
        refresh_tokens: refresh tokens that oauth2/token accepts.
        access_token_lifetime: seconds before a token issued by oauth2/token expires.
        max_upload_size: the body limit of one upload call; the real API's
            150 MiB unless a test lowers it.
    """

    def __init__(
        self,
        root: Path,
        *,
        tls_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        access_tokens: Collection[str] = (),
        apps: Mapping[str, str] | None = None,
        refresh_tokens: Collection[str] = (),
        access_token_lifetime: float = 14400.0,
        max_upload_size: int = MAX_UPLOAD_SIZE,
    ) -> None:
        self.root = root
        self._tls_dir = tls_dir
        self._host = host
        self._port = port
        self._store = Store(root)
        tokens = Tokens(access_tokens, apps or {}, refresh_tokens, access_token_lifetime)
        #: Faults to inject into coming requests.
        self.faults = Faults(tokens.expire_all)
        #: The latest requests answered, oldest first (bounded).
        self.requests: deque[RecordedRequest] = deque(maxlen=REQUEST_RECORD_SIZE)
        limiter = trio.CapacityLimiter(_FILE_THREADS)
        routes = Routes(self._store, limiter, max_upload_size)
        self._app = DropboxApp(routes, tokens, self.faults, self.requests)

    def __repr__(self) -> str:  # no tokens in reprs
        return f"DropboxEmulator(root={str(self.root)!r}, port={self._port})"

    async def run(
        self, *, task_status: trio.TaskStatus[DropboxEmulatorHandle] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``nursery.start`` returns a DropboxEmulatorHandle.

        hypercorn serves HTTPS on a private loopback port; the public ports are
        relays in front of it (see _dropbox_relay for why).
        """
        tls = await trio.to_thread.run_sync(ensure_local_certificate, self._tls_dir)
        await trio.to_thread.run_sync(self._store.prepare)
        config = hypercorn.Config()
        config.bind = ["127.0.0.1:0"]
        config.certfile = str(tls.cert_path)
        config.keyfile = str(tls.key_path)
        config.accesslog = None
        # hypercorn's default "-" would replace the shared logger's handlers with
        # its own stderr one; ours routes it through the daemon's log format.
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = 1.0
        api_listeners = await trio.open_tcp_listeners(self._port, host=self._host)
        content_port = self._port + 1 if self._port else 0
        content_listeners = await trio.open_tcp_listeners(content_port, host=self._host)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn.trio.serve, self._app, config)
            relay = Relay(int(binds[0].rsplit(":", 1)[1]))
            self._app.relay = relay
            nursery.start_soon(relay.serve, api_listeners[0], "api")
            nursery.start_soon(relay.serve, content_listeners[0], "content")
            handle = DropboxEmulatorHandle(
                api_host=_host_port(api_listeners[0]),
                content_host=_host_port(content_listeners[0]),
                ca_path=tls.ca_path,
            )
            log.info(
                "dropbox_emulator_listening",
                api_host=handle.api_host,
                content_host=handle.content_host,
                ca_path=str(tls.ca_path),
                root=str(self.root),
            )
            task_status.started(handle)


def _host_port(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_standalone(
    root: Path, state_dir: Path, port: int = 0, tokens: Collection[str] = ()
) -> None:
    """Run an emulator until cancelled, for ``hotwire emulator dropbox``.

    Without ``tokens``, one is generated into ``<state_dir>/dropbox-emulator.token``
    (mode 0600) and its path is logged, never its value. The log line
    ``dropbox_emulator_listening`` gives the hosts and the CA path to configure.
    """
    if not tokens:
        token_path = state_dir / "dropbox-emulator.token"
        token, _ = await trio.to_thread.run_sync(read_or_create_token, token_path)
        tokens = [token]
        log.info("dropbox_emulator_token", path=str(token_path))
    emulator = DropboxEmulator(root, tls_dir=state_dir / "tls", port=port, access_tokens=tokens)
    await emulator.run()
