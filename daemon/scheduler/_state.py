"""The scheduler's memory between runs and restarts: ``<state_dir>/scheduler.json``.

Per job the file holds its spec, where the job came from (``"config"``: the
configuration file; ``"admin"``: created through the admin API, so the file is
the only place it lives), whether it is paused, and its run history: runs done,
last run, next due run, last status and error. It is written atomically
(temporary file, fsync, ``os.replace``, fsync of the directory), so a crash
leaves either the old or the new version, never a torn one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .._fsync import fsync_directory
from ..exceptions import ConfigError
from ._jobs import JobSpec

Origin = Literal["config", "admin"]
Status = Literal["ok", "failed"]
_VERSION = 1


@dataclass
class JobState:
    """What the scheduler remembers about one job (mutable; owned by the scheduler)."""

    runs: int = 0
    last_run: datetime | None = None
    next_run: datetime | None = None
    last_status: Status | None = None
    last_error: str | None = None
    last_duration: float | None = None
    paused: bool = False

    def to_mapping(self) -> dict[str, Any]:
        """Return a JSON-safe mapping; datetimes as ISO strings."""
        return {
            "runs": self.runs,
            "last_run": _iso(self.last_run),
            "next_run": _iso(self.next_run),
            "last_status": self.last_status,
            "last_error": self.last_error,
            "last_duration": self.last_duration,
            "paused": self.paused,
        }

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> JobState:
        """Inverse of `to_mapping`; raises KeyError/TypeError/ValueError on a bad shape."""
        return cls(
            runs=int(data["runs"]),
            last_run=_datetime(data["last_run"]),
            next_run=_datetime(data["next_run"]),
            last_status=data["last_status"],
            last_error=data["last_error"],
            last_duration=data["last_duration"],
            paused=bool(data["paused"]),
        )


@dataclass
class StoredJob:
    """One job as read back from the state file."""

    spec: JobSpec
    origin: Origin
    state: JobState


def load_state(path: Path) -> dict[str, StoredJob]:
    """Read the state file; a missing file means no state yet.

    Raises ConfigError naming the file when it cannot be read back, rather
    than starting empty and silently losing admin-created jobs.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
        if data.get("version") != _VERSION:
            raise ValueError(f"expected version {_VERSION}, got {data.get('version')!r}")
        jobs = {}
        for name, entry in data["jobs"].items():
            origin = entry["origin"]
            if origin not in ("config", "admin"):
                raise ValueError(f"jobs[{name!r}].origin: expected 'config' or 'admin'")
            spec = JobSpec.from_mapping(entry["spec"], where=f"jobs[{name!r}].spec")
            jobs[name] = StoredJob(spec, origin, JobState.from_mapping(entry["state"]))
    except (ValueError, KeyError, TypeError, AttributeError, ConfigError) as exc:
        raise ConfigError(
            f"{path}: the scheduler state file is unreadable ({exc}); "
            "fix it or move it away to start with an empty schedule"
        ) from exc
    return jobs


def dump_state(jobs: Mapping[str, StoredJob]) -> dict[str, Any]:
    """Return the JSON document for ``jobs`` (built in the caller's thread)."""
    return {
        "version": _VERSION,
        "jobs": {
            name: {
                "origin": job.origin,
                "spec": job.spec.to_mapping(),
                "state": job.state.to_mapping(),
            }
            for name, job in jobs.items()
        },
    }


def write_state(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically (blocking: run it in a thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(document, file, indent=2, sort_keys=True)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)  # the rename is durable only once the entry is on disk


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
