"""The hot deployer: keeps the router in step with the files in ``services/``.

The directory is the truth and file events are only a hint: each batch of
events (and a quiet period of 5 s) triggers a rescan that lists the directory,
reads the files named by an event or whose stat signature changed, and
compares their content digest with what was last acted on. So an event missed
or merged by the OS watcher is caught at the next batch, an in-place rewrite
in the same clock tick is caught by its event, and a change made while the
daemon was down is caught at start, where every file is read. Per file, a
new version replaces the old one's services in one step; any failure leaves
the old version serving and is recorded with its traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
import trio
import watchfiles

from ._loader import (
    LoadedModule,
    ParsedSource,
    deploy_order,
    is_service_file,
    load_module,
    parse_source,
    unload_module,
)
from ._router import Router
from ._zato import install_zato_alias
from .exceptions import DeployError

__all__ = ["Deployer", "FileState"]

log = structlog.get_logger(__name__)

#: Loading runs module code, which may block (imports, I/O at import time): off the loop.
_LOADER_THREAD = trio.CapacityLimiter(1)


@dataclass
class FileState:
    """What the deployer knows of one file: queryable in-process and by the admin API.

    ``services`` are the names serving from this file now; after a failed
    deploy they are the previous version's, still serving. ``name_clash``
    marks a failure because another file holds one of its service names: the
    file is retried when a name is freed.
    """

    path: Path
    status: Literal["deployed", "failed"]
    services: tuple[str, ...] = ()
    error: str | None = None
    traceback: str | None = None
    name_clash: bool = False
    changed_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path.name,
            "status": self.status,
            "services": list(self.services),
            "error": self.error,
            "traceback": self.traceback,
            "changed_at": self.changed_at.isoformat(),
        }


@dataclass(frozen=True)
class _Content:
    """A file's bytes as read, with their digest: computed once, where they are read."""

    source: bytes
    digest: bytes


class Deployer:
    """Deploys every service file in ``directory`` into ``router`` and follows changes.

    ``step`` is the watcher's quiet period (seconds) before it reports a batch.
    """

    def __init__(
        self, directory: Path, router: Router, *, step: float = 0.01, force_polling: bool = False
    ) -> None:
        self.directory = directory
        self._router = router
        install_zato_alias()  # service files written for Zato import zato.server.service
        self._step_ms = max(1, round(step * 1000))
        self._force_polling = force_polling
        self._lock = trio.Lock()
        self._digests: dict[Path, bytes] = {}  # content last acted on, deployed or failed
        self._signatures: dict[Path, tuple[int, int, int, int]] = {}  # stat when last read
        self._imports: dict[Path, frozenset[str]] = {}
        self._states: dict[Path, FileState] = {}
        self._owners: dict[str, Path] = {}  # service name -> file serving it
        self._rescanned = trio.Event()

    async def wait_rescanned(self) -> None:
        """Return when the next rescan completes (for tests and benchmarks)."""
        await self._rescanned.wait()

    def file_of(self, name: str) -> Path | None:
        """The file service ``name`` is deployed from, if any."""
        return self._owners.get(name)

    def states(self) -> list[FileState]:
        """Deployment state of every known file, by file name."""
        return sorted(self._states.values(), key=lambda state: state.path.name)

    async def run(
        self, *, task_status: trio.TaskStatus[Deployer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Deploy what is in the directory, report ready, then follow changes until cancelled."""
        self.directory.mkdir(parents=True, exist_ok=True)
        await self.rescan()
        task_status.started(self)
        # watchfiles' thread only checks its stop event, so cancellation alone
        # would wait for its timeout (5 s); setting the event stops it within
        # one step. See STYLE.md on consuming awatch under Trio.
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_set_when_cancelled, stop)
            watcher = watchfiles.awatch(
                self.directory,
                watch_filter=lambda change, path: is_service_file(Path(path)),
                step=self._step_ms,
                stop_event=stop,
                recursive=False,
                force_polling=self._force_polling,
                yield_on_timeout=True,  # a periodic rescan, in case an event was lost
            )
            async with contextlib.aclosing(watcher) as batches:
                async for batch in batches:
                    await self.rescan({Path(path) for _, path in batch})

    async def rescan(self, hints: set[Path] | None = None) -> None:
        """Bring the deployment in line with the directory's content.

        Files are read when their stat signature changed or an event named
        them (``hints``; None reads everything); the content digest then
        decides. A periodic rescan after no event therefore costs a listing.
        """
        async with self._lock:
            owned = set(self._owners)
            listing = await trio.to_thread.run_sync(self._list, limiter=_LOADER_THREAD)
            wanted = {
                p
                for p, signature in listing.items()
                if hints is None or p in hints or self._signatures.get(p) != signature
            }
            contents = await self._read(wanted, listing)
            changed = {p for p, c in contents.items() if self._digests.get(p) != c.digest}
            deleted = set(self._digests) - set(listing)
            for path in sorted(deleted):
                await self._undeploy(path)
            parsed = {path: self._parse(path, contents[path].source) for path in changed}
            local = {path.stem for path in listing}
            redeploy = changed | self._dependents({p.stem for p in changed | deleted}, local)
            contents |= await self._read(redeploy - contents.keys(), listing)
            redeploy &= contents.keys()  # any deleted since the listing go at the next rescan
            for path in redeploy - parsed.keys():
                parsed[path] = self._parse(path, contents[path].source)
            await self._deploy_all({p: contents[p].digest for p in redeploy}, parsed, local)
            await self._retry_name_clashes(owned, listing, local)
            self._rescanned.set()
            self._rescanned = trio.Event()

    def _list(self) -> dict[Path, tuple[int, int, int, int]]:
        """Service files and their stat signatures (inode, size, mtime, ctime)."""
        listing = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return {}
        for entry in entries:
            path = Path(entry.path)
            if not is_service_file(path):
                continue
            with contextlib.suppress(FileNotFoundError):  # deleted since the listing
                if entry.is_file():
                    st = entry.stat()
                    listing[path] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        return listing

    async def _read(
        self, paths: set[Path], listing: dict[Path, tuple[int, int, int, int]]
    ) -> dict[Path, _Content]:
        def read() -> dict[Path, _Content]:
            contents = {}
            for path in paths:
                with contextlib.suppress(FileNotFoundError):  # deleted since the listing
                    source = path.read_bytes()
                    contents[path] = _Content(source, _digest(source))
            return contents

        contents = await trio.to_thread.run_sync(read, limiter=_LOADER_THREAD)
        for path in contents:
            self._signatures[path] = listing[path]
        return contents

    def _parse(self, path: Path, source: bytes) -> ParsedSource | DeployError:
        try:
            parsed = parse_source(path, source)
        except DeployError as exc:
            return exc
        self._imports[path] = parsed.imports
        return parsed

    def _dependents(self, stems: set[str], local: set[str]) -> set[Path]:
        """Files that import any of ``stems``, directly or through other files."""
        found: set[Path] = set()
        frontier = stems
        while frontier:
            new = {
                path
                for path, imported in self._imports.items()
                if path not in found and path.stem in local and imported & frontier
            }
            found |= new
            frontier = {path.stem for path in new}
        return found

    async def _deploy_all(
        self,
        digests: dict[Path, bytes],
        parsed: dict[Path, ParsedSource | DeployError],
        local: set[str],
    ) -> None:
        """Deploy each file of ``digests`` (its content's digest) in import order."""
        ordered, cyclic = deploy_order(
            {path: self._imports.get(path, frozenset()) & local for path in digests}
        )
        for path in cyclic:
            self._fail(path, digests[path], DeployError(f"{path.name}: is part of an import cycle"))
        for path in ordered:
            outcome = parsed[path]
            if isinstance(outcome, DeployError):
                self._fail(path, digests[path], outcome)
            else:
                await self._deploy(path, digests[path], outcome)

    async def _retry_name_clashes(
        self, owned: set[str], listing: dict[Path, tuple[int, int, int, int]], local: set[str]
    ) -> None:
        """Redeploy the files refused for a name clash, as long as names were freed.

        A name is freed when its file is deleted or redeploys without it; a
        retried file that deploys may free names of its own, hence the loop.
        It ends: a round continues only if a retried file deployed, and a
        deployed file is not retried.
        """
        while owned - set(self._owners):
            owned = set(self._owners)
            retry = {path for path, state in self._states.items() if state.name_clash}
            contents = await self._read(retry, listing)
            parsed = {path: self._parse(path, c.source) for path, c in contents.items()}
            await self._deploy_all({p: c.digest for p, c in contents.items()}, parsed, local)

    async def _deploy(self, path: Path, digest: bytes, parsed: ParsedSource) -> None:
        started = time.perf_counter()
        try:
            loaded = await trio.to_thread.run_sync(
                load_module, path, parsed, limiter=_LOADER_THREAD
            )
        except DeployError as exc:
            self._fail(path, digest, exc)
            return
        clash = self._name_clash(loaded)
        if clash is not None:
            self._fail(path, digest, clash, name_clash=True)
            return
        old = self._states.get(path)
        old_names = old.services if old else ()
        await self._router.swap(remove=old_names, add=loaded.services)
        names = tuple(service.name for service in loaded.services)
        for name in old_names:
            self._owners.pop(name, None)
        self._owners.update(dict.fromkeys(names, path))
        self._digests[path] = digest
        self._states[path] = FileState(path, "deployed", names)
        log.info(
            "service_file_deployed",
            file=path.name,
            services=list(names),
            ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def _name_clash(self, loaded: LoadedModule) -> DeployError | None:
        """The error for a service name another file already serves, if any."""
        for service in loaded.services:
            owner = self._owners.get(service.name, loaded.path)
            if owner != loaded.path:
                return DeployError(
                    f"{loaded.path.name}: service name {service.name!r} is already deployed"
                    f" from {owner.name}"
                )
        return None

    def _fail(
        self, path: Path, digest: bytes, error: DeployError, *, name_clash: bool = False
    ) -> None:
        old = self._states.get(path)
        self._digests[path] = digest
        self._states[path] = FileState(
            path,
            "failed",
            services=old.services if old else (),
            error=str(error),
            traceback=error.details,
            name_clash=name_clash,
        )
        log.error("service_file_failed", file=path.name, error=str(error), still_serving=bool(old))

    async def _undeploy(self, path: Path) -> None:
        state = self._states.pop(path, None)
        self._digests.pop(path, None)
        self._signatures.pop(path, None)
        self._imports.pop(path, None)
        unload_module(path)
        if state and state.services:
            await self._router.swap(remove=state.services, add=())
            for name in state.services:
                self._owners.pop(name, None)
        log.info(
            "service_file_undeployed",
            file=path.name,
            services=list(state.services if state else ()),
        )


async def _set_when_cancelled(event: trio.Event) -> None:
    try:
        await trio.sleep_forever()
    finally:
        event.set()


def _digest(source: bytes) -> bytes:
    return hashlib.blake2b(source, digest_size=16).digest()
