"""The Dropbox emulator's storage: a plain directory and the real API's path and write rules.

Files live under ``root`` at their Dropbox path, so a person can look at what
was uploaded. Dropbox paths are case-insensitive and case-preserving: a name is
stored as first given and later looked up by comparing lower-cased names (a
second upload to ``/A.txt`` lands on an existing ``/a.txt``). Metadata is
derived from the file system, never kept aside: ``rev`` from the inode, size and
timestamps, ``client_modified`` is the file's mtime, ``server_modified`` its
ctime. Only content hashes are cached, by rev.

Every method here is blocking and is called from a worker thread; one lock makes
a write's check-then-rename atomic with respect to other writes.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dropbox import files
from dropbox.content_hash import DropboxContentHasher

#: Staging area for uploads and sessions, inside ``root`` so that a commit is a
#: rename. Dropbox never syncs a name of that form, so it cannot collide.
STAGING_NAME = ".dropbox.cache"

# Names the real API refuses to store (``path/disallowed_name``).
_DISALLOWED = frozenset(
    {".ds_store", "desktop.ini", "thumbs.db", ".dropbox", ".dropbox.attr", "icon\r", STAGING_NAME}
)
_HASH_CACHE_SIZE = 4096
_READ_SIZE = 1 << 20


class LookupFailure(Exception):
    """A path lookup failed; ``error`` is the API's ``files.LookupError``."""

    def __init__(self, error: Any) -> None:
        super().__init__(error)
        self.error = error


class WriteFailure(Exception):
    """A write was refused; ``error`` is the API's ``files.WriteError``."""

    def __init__(self, error: Any) -> None:
        super().__init__(error)
        self.error = error


class UnsupportedPath(ValueError):
    """The path uses a form the emulator does not serve (``id:``, ``rev:``, ``ns:``)."""


def split_path(path: str) -> list[str] | None:
    """Return the components of a Dropbox path (``[]`` for the root ``""``), None if malformed.

    The real API refuses ``"/"``, a trailing slash, empty components and the
    relative components ``.`` and ``..`` (which would also escape ``root``).
    """
    if path == "":
        return []
    if path.startswith(("id:", "rev:", "ns:")):
        raise UnsupportedPath(f"the emulator serves only '/'-rooted paths, not {path!r}")
    if not path.startswith("/"):
        return None
    parts = path[1:].split("/")
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        return None
    return parts


def _lookup_error(tag: str) -> LookupFailure:
    return LookupFailure(getattr(files.LookupError, tag))


def _conflict(kind: str) -> WriteFailure:
    return WriteFailure(files.WriteError.conflict(getattr(files.WriteConflictError, kind)))


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC).replace(tzinfo=None)


def _rev(st: os.stat_result) -> str:
    key = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def hash_file(path: Path) -> str:
    """Return the Dropbox content hash of a file, reading it in blocks."""
    hasher = DropboxContentHasher()
    with path.open("rb") as file:
        while block := file.read(_READ_SIZE):
            hasher.update(block)
    return str(hasher.hexdigest())


class Store:
    """The files of one emulated Dropbox account, kept under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / STAGING_NAME
        self._lock = threading.Lock()
        self._hashes: OrderedDict[str, str] = OrderedDict()
        self._hashes_lock = threading.Lock()

    def prepare(self) -> None:
        """Create ``root`` and an empty staging area (sessions do not survive a restart)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)

    def new_staging_file(self, data: bytes = b"") -> Path:
        """Create a staging file for an upload body, holding ``data``."""
        fd, name = tempfile.mkstemp(dir=self.staging, prefix="upload-")
        try:
            with open(fd, "wb") as file:
                file.write(data)
        except BaseException:
            os.unlink(name)
            raise
        return Path(name)

    # -- lookups ---------------------------------------------------------------

    def metadata(self, path: str) -> Any:
        """Return the FileMetadata or FolderMetadata at ``path``; raise LookupFailure."""
        return self._metadata(self._existing(path))

    def file_for_download(self, path: str, rev: str | None) -> tuple[Any, Path]:
        """Return the metadata and local path of the file at ``path`` (at ``rev`` if given)."""
        found = self._existing(path)
        st = found.stat()
        if stat.S_ISDIR(st.st_mode):
            raise _lookup_error("not_file")
        metadata = self._metadata(found, st)
        if rev is not None and rev != metadata.rev:
            raise _lookup_error("not_found")  # no history is kept
        return metadata, found

    def list_folder(self, path: str, *, recursive: bool) -> list[Any]:
        """Return the metadata under the folder ``path``, sorted by lower-cased path."""
        listing = self._listing(path, recursive=recursive)
        entries = [self._metadata(item, st) for item, st in listing]
        return sorted(entries, key=lambda entry: entry.path_lower)

    def changed_since(self, path: str, *, recursive: bool, since_ns: int) -> list[Any]:
        """Return the files under ``path`` written after ``since_ns`` (ctime, nanoseconds).

        Deletions are not reported: nothing remembers what was there.
        """
        changed = [
            self._metadata(item, st)
            for item, st in self._listing(path, recursive=recursive)
            if stat.S_ISREG(st.st_mode) and st.st_ctime_ns > since_ns
        ]
        return sorted(changed, key=lambda entry: entry.path_lower)

    # -- writes ----------------------------------------------------------------

    def commit(self, staged: Path, info: Any, content_hash: str) -> Any:
        """Move a staged upload to ``info.path`` following ``info``'s write mode.

        Identical content is not a conflict unless ``strict_conflict`` is set;
        ``add`` conflicts with any file, ``update`` with a file of another rev;
        a conflict either renames (``autorename``) or raises WriteFailure.
        """
        parts = self._parts(info.path, lookup=False)
        if not parts:
            raise WriteFailure(files.WriteError.malformed_path(None))
        with self._lock:
            parent = self._make_folders(parts[:-1])
            existing = self._child(parent, parts[-1])
            target = existing or parent / parts[-1]
            conflict = self._conflict_kind(existing, info, content_hash)
            if conflict == "identical":
                staged.unlink()
                return self._metadata(target)
            if conflict is not None:
                if not info.autorename:
                    raise _conflict(conflict)
                target = self._free_name(parent, parts[-1])
            if info.client_modified is not None:
                mtime = calendar.timegm(info.client_modified.utctimetuple())
                os.utime(staged, (mtime, mtime))
            os.replace(staged, target)
            metadata = self._metadata(target, known_hash=content_hash)
        return metadata

    def delete(self, path: str) -> Any:
        """Delete the file or folder (recursively) at ``path``; return its last metadata."""
        with self._lock:
            found = self._existing(path)
            metadata = self._metadata(found)
            if isinstance(metadata, files.FolderMetadata):
                shutil.rmtree(found)
            else:
                found.unlink()
        return metadata

    # -- rules -----------------------------------------------------------------

    def _listing(self, path: str, *, recursive: bool) -> list[tuple[Path, os.stat_result]]:
        """The entries under the folder ``path``, each with its stat result."""
        parts = self._parts(path, lookup=True)
        folder = self._find(parts)
        if folder is None:
            raise _lookup_error("not_found")
        folder_st = folder.stat()
        if not stat.S_ISDIR(folder_st.st_mode):
            raise _lookup_error("not_folder")
        found = list(self._walk(folder, recursive=recursive))
        if recursive and parts:
            found.append((folder, folder_st))  # as the real API does
        return found

    def _conflict_kind(self, existing: Path | None, info: Any, content_hash: str) -> str | None:
        mode = info.mode
        if existing is None:
            # Non-strict update of a deleted file simply writes it again.
            return "file" if mode.is_update() and info.strict_conflict else None
        if existing.is_dir():
            return "folder"
        rev = _rev(existing.stat())
        if not info.strict_conflict and self._hash(existing, rev) == content_hash:
            return "identical"
        if mode.is_overwrite() or (mode.is_update() and mode.get_update() == rev):
            return None
        return "file"

    def _parts(self, path: str, *, lookup: bool) -> list[str]:
        parts = split_path(path)
        if parts is None:
            if lookup:
                raise LookupFailure(files.LookupError.malformed_path(None))
            raise WriteFailure(files.WriteError.malformed_path(None))
        if not lookup and any(part.lower() in _DISALLOWED for part in parts):
            raise WriteFailure(files.WriteError.disallowed_name)
        return parts

    def _existing(self, path: str) -> Path:
        parts = self._parts(path, lookup=True)
        found = self._find(parts) if parts else None
        if found is None:
            raise _lookup_error("not_found")
        return found

    def _find(self, parts: list[str]) -> Path | None:
        current = self.root
        for part in parts:
            child = self._child(current, part)
            if child is None:
                return None
            current = child
        return current

    def _child(self, folder: Path, name: str) -> Path | None:
        """Return the entry of ``folder`` whose name matches ``name`` case-insensitively."""
        if not folder.is_dir() or (folder == self.root and name.lower() == STAGING_NAME):
            return None
        exact = folder / name
        if exact.exists():
            return exact
        lowered = name.lower()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.lower() == lowered:
                    return Path(entry.path)
        return None

    def _make_folders(self, parts: list[str]) -> Path:
        current = self.root
        for part in parts:
            child = self._child(current, part)
            if child is None:
                child = current / part
                child.mkdir()
            elif not child.is_dir():
                raise _conflict("file_ancestor")
            current = child
        return current

    def _free_name(self, parent: Path, name: str) -> Path:
        stem, dot, suffix = name.rpartition(".")
        if not stem:  # no extension, or a dot file
            stem, dot, suffix = name, "", ""
        number = 1
        while True:
            candidate = f"{stem} ({number}){dot}{suffix}"
            if self._child(parent, candidate) is None:
                return parent / candidate
            number += 1

    def _walk(self, folder: Path, *, recursive: bool) -> Iterator[tuple[Path, os.stat_result]]:
        with os.scandir(folder) as scan:
            entries = [
                (Path(e.path), e.stat())
                for e in scan
                if folder != self.root or e.name != STAGING_NAME
            ]
        for entry, st in entries:
            yield entry, st
            if recursive and stat.S_ISDIR(st.st_mode):
                yield from self._walk(entry, recursive=True)

    # -- metadata --------------------------------------------------------------

    def _metadata(
        self, path: Path, st: os.stat_result | None = None, *, known_hash: str | None = None
    ) -> Any:
        """The metadata of ``path``, from ``st`` if the caller has already stat'ed it."""
        if st is None:
            st = path.stat()
        display = "/" + path.relative_to(self.root).as_posix()
        item_id = "id:" + hashlib.sha256(display.lower().encode()).hexdigest()[:22]
        if stat.S_ISDIR(st.st_mode):
            return files.FolderMetadata(
                name=path.name, id=item_id, path_lower=display.lower(), path_display=display
            )
        rev = _rev(st)
        if known_hash is not None:
            self._remember(rev, known_hash)
        return files.FileMetadata(
            name=path.name,
            id=item_id,
            client_modified=_utc(st.st_mtime),
            server_modified=_utc(st.st_ctime),
            rev=rev,
            size=st.st_size,
            path_lower=display.lower(),
            path_display=display,
            content_hash=self._hash(path, rev),
            is_downloadable=True,
        )

    def _hash(self, path: Path, rev: str) -> str:
        """The content hash of the file at ``path``, cached by its ``rev``."""
        with self._hashes_lock:
            known = self._hashes.get(rev)
        if known is None:
            known = hash_file(path)  # a file put there by hand, or before a restart
            self._remember(rev, known)
        return known

    def _remember(self, rev: str, content_hash: str) -> None:
        with self._hashes_lock:
            self._hashes[rev] = content_hash
            self._hashes.move_to_end(rev)
            while len(self._hashes) > _HASH_CACHE_SIZE:
                self._hashes.popitem(last=False)
