"""The typed configuration: ``conf/hotwire.toml`` loaded into frozen dataclasses.

Section paths mirror the service API. Relative paths resolve against the
config file's directory. Secret references are resolved at load time into
`Secret` objects that never show their value. `load_config` reads
``--config``, else ``$HOTWIRE_CONFIG``, else ``conf/hotwire.toml``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from ._schema import Context, Convert, build
from ._secrets import Secret, resolve_secret
from ._units import parse_duration, parse_size
from .exceptions import ConfigError
from .scheduler import JobSpec

__all__ = ["Config", "default_config_path", "load_config"]

DEFAULT_CONFIG = Path("conf/hotwire.toml")


def _duration(value: Any, context: Context) -> float:
    return parse_duration(value)


def _size(value: Any, context: Context) -> int:
    return parse_size(value)


def _path(value: Any, context: Context) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (context.base_dir / path).resolve()


def _optional_secret(value: Any, context: Context) -> Secret | None:
    if not isinstance(value, str):
        raise ValueError("expected a string or a reference such as 'env:NAME'")
    return resolve_secret(value, base_dir=context.base_dir, key=context.key)


def _required_secret(value: Any, context: Context) -> Secret:
    secret = _optional_secret(value, context)
    if secret is None:
        raise ValueError(f"{value!r} names an environment variable that is not set")
    return secret


def _job(value: Any, context: Context) -> JobSpec:
    # ConfigError is not caught by the schema builder; it already names file and key.
    return JobSpec.from_mapping(value, where=f"{context.file}: {context.key}")


def _port(value: Any, context: Context) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"expected a port number from 0 to 65535, got {value!r}")
    return value


Duration = Annotated[float, Convert(_duration)]
Size = Annotated[int, Convert(_size)]
ConfigPath = Annotated[Path, Convert(_path)]
Port = Annotated[int, Convert(_port)]
#: A secret that may be absent: ``env:NAME`` with NAME unset gives None.
OptionalSecret = Annotated[Secret | None, Convert(_optional_secret)]
RequiredSecret = Annotated[Secret, Convert(_required_secret)]
Job = Annotated[JobSpec, Convert(_job)]

_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PATH_SEGMENT = re.compile(r"^(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z0-9._~!$&'()*+,;=:@%-]+)$")


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: where HTTP listens and how it stops."""

    host: str = "127.0.0.1"
    port: Port = 11223
    #: In-flight requests get this long to finish after SIGTERM before they are cancelled.
    grace_period: Duration = 30.0
    #: An idle keep-alive connection is closed after this long.
    keep_alive_timeout: Duration = 5.0
    #: Request bodies up to this size stay in memory; larger ones are spooled to
    #: ``<state>/http-spool`` while they arrive, so memory stays flat for any size.
    spool_threshold: Size = 1024 * 1024
    #: hypercorn's trio worker with Hotwire's faster connection glue (about 2x the
    #: small requests per second); false uses hypercorn's own. See http/_fast_transport.
    fast_transport: bool = True
    #: Worker processes sharing the port (SO_REUSEPORT) under a supervisor;
    #: ``"auto"``: one per core. 1 runs the daemon as a single process.
    workers: int | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        if self.workers != "auto" and not 1 <= self.workers <= 64:
            raise ValueError(f"workers: expected 1 to 64 or 'auto', got {self.workers}")

    def worker_count(self) -> int:
        """How many worker processes to run: ``workers``, or the number of cores."""
        return (os.cpu_count() or 1) if self.workers == "auto" else self.workers


@dataclass(frozen=True)
class PathsConfig:
    """``[paths]``: the hot-deploy directory and the state directory."""

    services: ConfigPath
    state: ConfigPath


@dataclass(frozen=True)
class DeployConfig:
    """``[deploy]``: how ``services/`` is watched.

    ``step`` is how long the watcher waits for a burst of file events to go
    quiet; it, not the debounce, sets the deploy latency (about 15 ms at 10 ms).
    """

    step: Duration = 0.01
    force_polling: bool = False

    def __post_init__(self) -> None:
        if not 0.001 <= self.step <= 5:
            raise ValueError(f"deploy.step: expected from 1ms to 5s, got {self.step}s")


@dataclass(frozen=True)
class LogConfig:
    """``[log]``: level and format; ``auto`` is JSON unless stdout is a terminal."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True)
class AdminConfig:
    """``[admin]``: the admin API's bearer token.

    Unset (or an ``env:`` reference to an unset variable): a token is generated
    on first start into ``<state>/admin.token`` with mode 0600.
    """

    token: OptionalSecret = None


@dataclass(frozen=True)
class ChannelSecurity:
    """``security = {...}`` of a REST channel: HTTP basic auth or an API key header."""

    type: Literal["basic", "apikey"]
    username: str | None = None
    password: RequiredSecret | None = None
    header: str = "X-API-Key"
    key: RequiredSecret | None = None

    def __post_init__(self) -> None:
        if self.type == "basic" and (self.username is None or self.password is None):
            raise ValueError("basic security needs username and password")
        if self.type == "apikey" and self.key is None:
            raise ValueError("apikey security needs key (and optionally header)")


@dataclass(frozen=True)
class RestChannel:
    """One ``[[channels.rest]]``: a URL path (``{param}`` segments allowed) -> a service."""

    path: str
    service: str
    methods: tuple[str, ...] = ("POST",)
    max_body: Size = 10 * 1024 * 1024
    #: The service must answer within this long, else 504 (default: no limit).
    timeout: Duration | None = None
    security: ChannelSecurity | None = None
    #: ``sync`` answers with the service's response; ``durable`` answers 202 with
    #: a message id once the request is on disk, and the outbox delivers it.
    delivery: Literal["sync", "durable"] = "sync"

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or not all(
            _PATH_SEGMENT.match(segment) for segment in self.path[1:].split("/") if segment
        ):
            raise ValueError(
                f"path: expected '/segment/{{param}}/...' of URL-safe characters, got {self.path!r}"
            )
        params = [segment[1:-1] for segment in self.path.split("/") if segment.startswith("{")]
        repeated = next((name for name in params if params.count(name) > 1), None)
        if repeated is not None:
            # The router names each parameter's regex group; a repeat would not compile.
            raise ValueError(f"path: parameter {repeated!r} appears twice in {self.path!r}")
        if self.path.startswith(("/admin", "/metrics")):
            raise ValueError(f"path: {self.path!r} is reserved for the admin API and metrics")
        bad = [m for m in self.methods if m not in _HTTP_METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods: expected some of {', '.join(_HTTP_METHODS)}, got {bad}")


@dataclass(frozen=True)
class ChannelsConfig:
    """``[channels]``: REST channels, in order; the first matching path wins."""

    rest: tuple[RestChannel, ...] = ()


@dataclass(frozen=True)
class DropboxConnectionConfig:
    """``[cloud.dropbox."NAME"]``: a Dropbox connection (``self.cloud.dropbox["NAME"]``).

    Credentials: ``token``; or ``refresh_token`` + ``app_key`` (+ ``app_secret``)
    so short-lived tokens renew themselves; or ``emulator = true`` for the
    embedded emulator. ``api_host``/``content_host``/``ca_certs`` point the SDK
    at another endpoint (a proxy, a test peer) for every request, refresh included.
    """

    user_agent: str
    emulator: bool = False
    token: RequiredSecret | None = None
    refresh_token: RequiredSecret | None = None
    app_key: str | None = None
    app_secret: RequiredSecret | None = None
    timeout: Duration = 100.0
    max_retries_on_error: int = 4
    max_retries_on_rate_limit: int = 4
    #: Relative paths given to the connection's helpers resolve under this folder.
    default_directory: str = "/"
    api_host: str | None = None
    content_host: str | None = None
    ca_certs: ConfigPath | None = None
    #: Files up to this size go up in one request; larger ones in an upload session.
    single_upload_limit: Size = 8 * 1024 * 1024
    #: Upload session chunk size: a multiple of 4 MiB, at most 148 MiB.
    chunk_size: Size = 8 * 1024 * 1024
    #: How many SDK calls of this connection may run at once (threads).
    concurrency: int = 4

    def __post_init__(self) -> None:
        if not self.user_agent.strip():
            raise ValueError(
                "user_agent: must not be empty; Dropbox tells environments apart by it"
            )
        if not self.emulator and not self.token and not (self.refresh_token and self.app_key):
            raise ValueError("needs token, or refresh_token with app_key, or emulator = true")
        if self.chunk_size % (4 * 1024 * 1024) or not 0 < self.chunk_size <= 148 * 1024 * 1024:
            raise ValueError("chunk_size: expected a multiple of 4MiB, at most 148MiB")
        if not 0 < self.single_upload_limit <= 150 * 1024 * 1024:
            raise ValueError("single_upload_limit: expected at most 150MiB (Dropbox's limit)")
        if not self.default_directory.startswith("/"):
            raise ValueError("default_directory: expected an absolute Dropbox path such as '/'")
        if self.concurrency < 1:
            raise ValueError("concurrency: expected 1 or more")


@dataclass(frozen=True)
class CloudConfig:
    """``[cloud]``: cloud connections by kind, then by name."""

    dropbox: dict[str, DropboxConnectionConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class FtpConnectionConfig:
    """``[outgoing.ftp."NAME"]``: a pooled FTP/FTPS connection (``self.outgoing.ftp["NAME"]``).

    ``emulator = true`` takes host, port, user and password from the embedded
    FTP emulator instead.
    """

    host: str = "127.0.0.1"
    port: Port = 21
    user: str = "anonymous"
    password: RequiredSecret | None = None
    emulator: bool = False
    #: Explicit FTPS (AUTH TLS), with the data connection encrypted too.
    tls: bool = False
    ca_certs: ConfigPath | None = None
    passive: bool = True
    timeout: Duration = 30.0
    pool_size: int = 4
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError("pool_size: expected 1 or more")


@dataclass(frozen=True)
class OutgoingConfig:
    """``[outgoing]``: outgoing connections by kind, then by name."""

    ftp: dict[str, FtpConnectionConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class FtpEmulatorConfig:
    """``[emulators.ftp]``: the embedded FTP server (pyftpdlib) on a directory.

    Files dropped under ``root`` (default ``<state>/ftp``) are what FTP clients
    see. Without ``password`` a random one is made at each start, and
    ``emulator = true`` connections are given it.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Port = 2121
    root: ConfigPath | None = None
    user: str = "hotwire"
    password: RequiredSecret | None = None
    tls: bool = False


@dataclass(frozen=True)
class DropboxEmulatorConfig:
    """``[emulators.dropbox]``: the embedded Dropbox API emulator.

    Files land under ``root`` (default ``<state>/dropbox``).
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Port = 0
    root: ConfigPath | None = None


@dataclass(frozen=True)
class EmulatorsConfig:
    """``[emulators]``: offline peers for development; on in the default config."""

    dropbox: DropboxEmulatorConfig = field(default_factory=DropboxEmulatorConfig)
    ftp: FtpEmulatorConfig = field(default_factory=FtpEmulatorConfig)


@dataclass(frozen=True)
class OutboxConfig:
    """``[outbox]``: durable delivery (``delivery = "durable"`` channels, durable invokes).

    A message is tried again after a failure with exponential back-off (with
    jitter) from ``backoff_base`` up to ``backoff_max``; after ``max_attempts``
    it is dead until retried through the admin API.
    """

    max_attempts: int = 10
    backoff_base: Duration = 1.0
    backoff_max: Duration = 300.0
    per_target_concurrency: int = 4
    #: Delivered messages are forgotten after this long.
    retention: Duration = 86400.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.per_target_concurrency < 1:
            raise ValueError("max_attempts and per_target_concurrency: expected 1 or more")


@dataclass(frozen=True)
class SchedulerConfig:
    """``[[scheduler.jobs]]``: jobs that invoke a service by name (see daemon.scheduler)."""

    jobs: tuple[Job, ...] = ()

    def __post_init__(self) -> None:
        names = [job.name for job in self.jobs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"jobs: each name must be unique, {duplicates[0]!r} is used twice")


@dataclass(frozen=True)
class Config:
    """The whole configuration. ``source`` is the file it came from."""

    paths: PathsConfig
    server: ServerConfig = field(default_factory=ServerConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    log: LogConfig = field(default_factory=LogConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    channels: ChannelsConfig = field(default_factory=ChannelsConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    outgoing: OutgoingConfig = field(default_factory=OutgoingConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    emulators: EmulatorsConfig = field(default_factory=EmulatorsConfig)
    source: Path = field(default=Path("<memory>"), init=False, compare=False)

    def __post_init__(self) -> None:
        # Checked here so `hotwire check` and a reload refuse it, not the first use.
        emulated = [
            (f"cloud.dropbox.{name!r}", "dropbox", self.emulators.dropbox.enabled)
            for name, dropbox in self.cloud.dropbox.items()
            if dropbox.emulator
        ] + [
            (f"outgoing.ftp.{name!r}", "ftp", self.emulators.ftp.enabled)
            for name, ftp in self.outgoing.ftp.items()
            if ftp.emulator
        ]
        for key, kind, enabled in emulated:
            if not enabled:
                raise ValueError(f"{key}: emulator = true, but [emulators.{kind}] is not enabled")

    def with_server(self, **changes: Any) -> Config:
        """A copy with some ``[server]`` settings changed; the source file is kept."""
        config = dataclasses.replace(self, server=dataclasses.replace(self.server, **changes))
        object.__setattr__(config, "source", self.source)
        return config

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: Path) -> Config:
        """Build from parsed TOML; relative paths resolve against ``source``'s directory."""
        config = build(cls, data, Context(file=source, key=""))
        object.__setattr__(config, "source", source)
        return config


def default_config_path() -> Path:
    """``$HOTWIRE_CONFIG`` if set, else ``conf/hotwire.toml``."""
    return Path(os.environ.get("HOTWIRE_CONFIG") or DEFAULT_CONFIG)


def load_config(path: Path | None = None) -> Config:
    """Read and validate the configuration file.

    Raises ConfigError naming the file, the key path and what was expected.
    """
    path = (path or default_config_path()).expanduser().absolute()
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return Config.from_mapping(data, source=path)
