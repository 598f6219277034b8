"""Job specifications: what to run, when, and how the next run is computed.

A job invokes one service by name on one of three triggers:

``interval``
    Real elapsed time. Runs fall on the grid ``start + k * interval``
    (k = 0, 1, 2, ...), computed in UTC, so ``"1d"`` means 24 real hours:
    across a DST change the wall-clock time of the run moves by an hour. A
    naive ``start`` is read in ``timezone`` (a wall-clock time in a DST gap
    takes the offset before the gap; in an overlap, the first occurrence). When
    ``start`` is in the past, the next run is the next point of the grid. Without
    ``start`` the grid is anchored at the Unix epoch (UTC), so ``"30s"`` runs at
    :00 and :30 of every minute and a restart does not shift it.
``cron``
    A cron expression evaluated on the wall clock of ``timezone`` (croniter with
    tz-aware datetimes). Where DST moves the clock, croniter's rules hold: a time
    skipped by spring-forward (``"30 2 * * *"`` in Europe/Berlin) runs at the
    first instant after the gap (03:00 CEST); a time repeated by fall-back
    (``"30 2 * * *"`` on the last Sunday of October) runs twice, once in each
    offset. No run is earlier than ``start`` if given.
``at``
    Once, at that instant (naive = in ``timezone``), then the job is done.

``repeats`` stops the job after that many scheduled runs. ``jitter`` delays
each run by a random 0..jitter seconds without moving the grid (keep it shorter
than the interval: grid points passed while waiting are not caught up).

``missed`` is the policy for runs that fell due while the daemon was down
(the scheduler's state file says a run was due at or before start-up time):
``"run_once"`` runs the job once right at start-up, however many runs were
missed, then continues on the grid; ``"skip"`` drops the missed runs and
waits for the next grid point. A job the daemon has never scheduled before
(no state) has missed nothing: its first run is the first grid point from now
on, and a one-off ``at`` already in the past never runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .._units import parse_duration
from ..exceptions import ConfigError

MissedPolicy = Literal["run_once", "skip"]
_MISSED_POLICIES: tuple[MissedPolicy, ...] = ("run_once", "skip")
_TRIGGERS = ("interval", "cron", "at")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One scheduled job, as configured or created through the admin API.

    Build it from untrusted input with `from_mapping`, which validates; the
    constructor trusts its arguments. Exactly one of ``interval`` (seconds),
    ``cron`` and ``at`` is set.
    """

    name: str
    service: str
    interval: float | None = None
    cron: str | None = None
    at: datetime | None = None
    start: datetime | None = None
    timezone: str = "UTC"
    repeats: int | None = None
    payload: Any = None
    jitter: float = 0.0
    timeout: float | None = None
    missed: MissedPolicy = "run_once"
    enabled: bool = True

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str) -> JobSpec:
        """Validate config or admin input (a TOML table, a JSON object) into a JobSpec.

        ``where`` prefixes every error, e.g. ``"scheduler.jobs[0]"``. Durations
        accept ``"30s"``, ``"5m"`` or numbers of seconds; datetimes accept ISO
        strings or TOML datetimes.

        Raises ConfigError naming ``where``, the key and the expected form.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a table of job settings, got {data!r}")
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in fields:
                raise ConfigError(
                    f"{where}.{key}: unknown key; expected one of {', '.join(fields)}"
                )
        for key in ("name", "service"):
            if key not in data:
                raise ConfigError(f"{where}.{key}: required key is missing")
        triggers = [key for key in _TRIGGERS if data.get(key) is not None]
        if len(triggers) != 1:
            found = f"got {' and '.join(triggers)}" if triggers else "got none"
            raise ConfigError(
                f"{where}: expected exactly one of interval (e.g. '30s'), "
                f"cron (e.g. '*/5 * * * *') or at (a date-time), {found}"
            )
        if data.get("start") is not None and triggers == ["at"]:
            raise ConfigError(f"{where}.start: only allowed with interval or cron, not with at")

        values: dict[str, Any] = {}
        for key, value in data.items():
            if value is None and key in _OPTIONAL:
                values[key] = None
                continue
            try:
                values[key] = _PARSERS[key](value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{where}.{key}: {exc}") from exc
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        """Return a JSON-safe mapping that `from_mapping` turns back into this spec."""
        mapping = dataclasses.asdict(self)
        for key in ("at", "start"):
            if mapping[key] is not None:
                mapping[key] = mapping[key].isoformat()
        return mapping

    @property
    def zone(self) -> ZoneInfo:
        """The job's timezone as a ZoneInfo."""
        return ZoneInfo(self.timezone)


def next_run(spec: JobSpec, after: datetime, runs_done: int) -> datetime | None:
    """Return the job's first due instant strictly after ``after``, or None when done.

    ``after`` is an aware datetime; the result is aware UTC. ``runs_done``
    counts the scheduled runs so far, for ``repeats`` and one-off ``at`` jobs.
    Pure: the same arguments always give the same answer.
    """
    if spec.repeats is not None and runs_done >= spec.repeats:
        return None
    after = after.astimezone(UTC)
    zone = spec.zone
    if spec.at is not None:
        at = _aware(spec.at, zone)
        return at if runs_done == 0 and at > after else None
    start = _aware(spec.start, zone) if spec.start is not None else None
    if spec.interval is not None:
        anchor = start if start is not None else _EPOCH
        if after < anchor:
            return anchor
        step = spec.interval
        k = math.floor((after - anchor).total_seconds() / step) + 1
        due = anchor + timedelta(seconds=k * step)
        while due <= after:  # float rounding may land on `after` itself
            k += 1
            due = anchor + timedelta(seconds=k * step)
        return due
    assert spec.cron is not None
    if start is not None and after < start:
        # No run before start, but a run exactly at start counts.
        after = start - timedelta(microseconds=1)
    due = croniter(spec.cron, after.astimezone(zone)).get_next(datetime)
    return cast(datetime, due).astimezone(UTC)


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    """Read a naive datetime in ``zone``; convert any datetime to UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _parse_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"expected a non-empty string, got {value!r}")
    return value


def _duration(value: Any, *, positive: bool) -> float:
    example = "a positive duration" if positive else "a duration"
    example += " such as '30s', '5m', '2h' or a number of seconds"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"expected {example}, got {value!r}")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"expected {example}, got {value!r}") from exc
    if positive and seconds <= 0:
        raise ValueError(f"expected {example}, got {value!r}")
    return seconds


def _parse_positive_duration(value: Any) -> float:
    return _duration(value, positive=True)


def _parse_jitter(value: Any) -> float:
    return _duration(value, positive=False)


def _parse_cron(value: Any) -> str:
    example = "expected a cron expression such as '*/5 * * * *'"
    if not isinstance(value, str):
        raise TypeError(f"{example}, got {value!r}")
    try:
        croniter(value)
    except (ValueError, KeyError) as exc:  # croniter's errors subclass ValueError
        raise ValueError(f"{example}, got {value!r} ({exc})") from exc
    return value


def _parse_datetime(value: Any) -> datetime:
    example = "expected a date-time such as '2026-12-04T09:00:00' (naive = in timezone)"
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if not isinstance(value, str):
        raise TypeError(f"{example}, got {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{example}, got {value!r}") from exc


def _parse_timezone(value: Any) -> str:
    example = "expected an IANA timezone such as 'Europe/Berlin' or 'UTC'"
    if not isinstance(value, str):
        raise TypeError(f"{example}, got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{example}, got {value!r}") from exc
    return value


def _parse_repeats(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of runs of 1 or more, got {value!r}")
    return value


def _parse_payload(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"expected a JSON-compatible value (tables, lists, strings, numbers, booleans), "
            f"got {value!r}"
        ) from exc
    return value


def _parse_missed(value: Any) -> MissedPolicy:
    if value not in _MISSED_POLICIES:
        raise ValueError(f"expected 'run_once' or 'skip', got {value!r}")
    return cast(MissedPolicy, value)


def _parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "name": _parse_text,
    "service": _parse_text,
    "interval": _parse_positive_duration,
    "cron": _parse_cron,
    "at": _parse_datetime,
    "start": _parse_datetime,
    "timezone": _parse_timezone,
    "repeats": _parse_repeats,
    "payload": _parse_payload,
    "jitter": _parse_jitter,
    "timeout": _parse_positive_duration,
    "missed": _parse_missed,
    "enabled": _parse_bool,
}
# Keys whose value may be null (JSON) to mean "not set".
_OPTIONAL = frozenset({"interval", "cron", "at", "start", "repeats", "timeout"})
