"""Tests for job specs: validation of config/admin input and next-run computation."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon import load_config
from daemon.exceptions import ConfigError
from daemon.scheduler import JobSpec, next_run

BERLIN = ZoneInfo("Europe/Berlin")
WHERE = "scheduler.jobs[0]"
WHERE_RE = re.escape(WHERE)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def spec(**settings: Any) -> JobSpec:
    return JobSpec.from_mapping({"name": "job", "service": "svc", **settings}, where=WHERE)


class TestFromMapping:
    """`JobSpec.from_mapping` turns valid input into typed specs."""

    def test_toml_table(self) -> None:
        """A TOML job table with a TOML datetime and unit durations is read fully."""
        data = tomllib.loads(
            """
            [[scheduler.jobs]]
            name = "ftp-to-dropbox"
            service = "api.channel.scheduler.upload"
            interval = "30s"
            start = 2026-12-04T09:00:00
            timezone = "Europe/Berlin"
            repeats = 10
            payload = { folder = "/in" }
            jitter = "2s"
            timeout = "5m"
            missed = "skip"
            enabled = false
            """
        )
        job = JobSpec.from_mapping(data["scheduler"]["jobs"][0], where=WHERE)
        assert job == JobSpec(
            name="ftp-to-dropbox",
            service="api.channel.scheduler.upload",
            interval=30.0,
            start=datetime(2026, 12, 4, 9, 0),
            timezone="Europe/Berlin",
            repeats=10,
            payload={"folder": "/in"},
            jitter=2.0,
            timeout=300.0,
            missed="skip",
            enabled=False,
        )

    def test_iso_strings_and_json_nulls(self) -> None:
        """Admin JSON gives datetimes as ISO strings and unset keys as null."""
        job = spec(at="2026-12-04T09:00:00+01:00", interval=None, cron=None, timeout=None)
        assert job.at == datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
        assert job.interval is None and job.timeout is None

    def test_to_mapping_round_trips_through_json(self) -> None:
        """`to_mapping` is JSON-safe and `from_mapping` reads it back unchanged."""
        job = spec(cron="*/5 * * * *", start="2026-12-04T09:00:00", timezone="Europe/Berlin")
        again = JobSpec.from_mapping(json.loads(json.dumps(job.to_mapping())), where="state")
        assert again == job


BAD_INPUTS = [
    ({"intervall": "30s"}, f"{WHERE}.intervall: unknown key; expected one of name, service"),
    ({"service": None}, f"{WHERE}.service: expected a non-empty string, got None"),
    ({"name": ""}, f"{WHERE}.name: expected a non-empty string, got ''"),
    ({"interval": "30s", "cron": "* * * * *"}, "got interval and cron"),
    ({"interval": None}, f"{WHERE}: expected exactly one of interval (e.g. '30s'),"),
    (
        {"cron": "every minute", "interval": None},
        f"{WHERE}.cron: expected a cron expression such as '*/5 * * * *', got 'every minute' (",
    ),
    (
        {"cron": 5, "interval": None},
        f"{WHERE}.cron: expected a cron expression such as '*/5 * * * *', got 5",
    ),
    ({"interval": 0}, f"{WHERE}.interval: expected a positive duration such as '30s'"),
    ({"interval": "-5s"}, f"{WHERE}.interval: expected a positive duration"),
    ({"interval": "soon"}, f"{WHERE}.interval: expected a positive duration"),
    ({"interval": True}, f"{WHERE}.interval: expected a positive duration"),
    ({"interval": [30]}, f"{WHERE}.interval: expected a positive duration"),
    ({"timezone": "Mars/Olympus"}, f"{WHERE}.timezone: expected an IANA timezone such as"),
    ({"timezone": 1}, f"{WHERE}.timezone: expected an IANA timezone"),
    ({"at": "tomorrow", "interval": None}, f"{WHERE}.at: expected a date-time such as"),
    ({"start": "2026-13-01"}, f"{WHERE}.start: expected a date-time such as"),
    ({"start": 1700000000}, f"{WHERE}.start: expected a date-time"),
    ({"repeats": 0}, f"{WHERE}.repeats: expected a whole number of runs of 1 or more, got 0"),
    ({"repeats": "3"}, f"{WHERE}.repeats: expected a whole number of runs"),
    ({"jitter": "lots"}, f"{WHERE}.jitter: expected a duration such as '30s'"),
    ({"timeout": "0s"}, f"{WHERE}.timeout: expected a positive duration"),
    ({"missed": "always"}, f"{WHERE}.missed: expected 'run_once' or 'skip', got 'always'"),
    ({"enabled": "yes"}, f"{WHERE}.enabled: expected true or false, got 'yes'"),
    ({"payload": {"when": datetime(2026, 1, 1)}}, f"{WHERE}.payload: expected a JSON-compatible"),
]


class TestFromMappingErrors:
    """Each kind of bad input raises ConfigError naming the key and the expected form."""

    @pytest.mark.parametrize(("override", "message"), BAD_INPUTS)
    def test_bad_value(self, override: dict[str, Any], message: str) -> None:
        """The error names ``where``, the key and what was expected."""
        data = {"name": "job", "service": "svc", "interval": "30s", **override}
        with pytest.raises(ConfigError) as caught:
            JobSpec.from_mapping(data, where=WHERE)
        assert message in str(caught.value)

    @pytest.mark.parametrize("key", ["name", "service"])
    def test_missing_required_key(self, key: str) -> None:
        """A missing name or service is named."""
        data = {"name": "job", "service": "svc", "interval": "30s"}
        del data[key]
        with pytest.raises(ConfigError, match=rf"^{WHERE_RE}\.{key}: required key is missing$"):
            JobSpec.from_mapping(data, where=WHERE)

    def test_neither_trigger(self) -> None:
        """A job without interval, cron or at says which keys it needs."""
        with pytest.raises(ConfigError, match=r"expected exactly one of .* got none"):
            JobSpec.from_mapping({"name": "job", "service": "svc"}, where=WHERE)

    def test_start_with_at(self) -> None:
        """``start`` means nothing for a one-off job, so it is rejected."""
        with pytest.raises(ConfigError, match=rf"{WHERE_RE}\.start: only allowed with interval"):
            spec(at="2026-12-04T09:00:00", start="2026-12-01T00:00:00")

    def test_not_a_table(self) -> None:
        """A job that is not a table is rejected as a whole."""
        with pytest.raises(ConfigError, match=rf"^{WHERE_RE}: expected a table"):
            JobSpec.from_mapping(["job"], where=WHERE)  # type: ignore[arg-type]


class TestConfigJobs:
    """``[[scheduler.jobs]]`` in the configuration file."""

    def test_duplicate_names_are_refused(self, tmp_path: Path) -> None:
        """Two config jobs of one name stop loading; the scheduler relies on unique names."""
        path = tmp_path / "hotwire.toml"
        job = '[[scheduler.jobs]]\nname = "same"\nservice = "svc"\ninterval = "1m"\n'
        path.write_text('[paths]\nservices = "services"\nstate = "state"\n' + job + job)
        with pytest.raises(ConfigError, match="jobs: each name must be unique, 'same' is used"):
            load_config(path)


class TestNextRunInterval:
    """Interval jobs run on the real-time grid start + k * interval."""

    def test_grid_anchored_at_start_in_timezone(self) -> None:
        """A naive start is read in the job's timezone; before it, the first run is start."""
        job = spec(interval="30s", start="2026-12-04T09:00:00", timezone="Europe/Berlin")
        assert next_run(job, utc("2026-12-04T07:00:00"), 0) == utc("2026-12-04T08:00:00")
        assert next_run(job, utc("2026-12-04T08:00:00"), 1) == utc("2026-12-04T08:00:30")
        assert next_run(job, utc("2026-12-04T08:10:10"), 5) == utc("2026-12-04T08:10:30")

    def test_without_start_the_grid_is_epoch_aligned(self) -> None:
        """Without start, "5m" runs at whole five-minute marks of UTC."""
        job = spec(interval="5m")
        assert next_run(job, utc("2026-01-01T10:02:03"), 0) == utc("2026-01-01T10:05:00")
        assert next_run(job, utc("2026-01-01T10:05:00"), 0) == utc("2026-01-01T10:10:00")

    def test_fractional_interval_stays_strictly_after(self) -> None:
        """Float rounding never returns the instant passed in."""
        job = spec(interval=0.1, start="2026-01-01T00:00:00")
        after = utc("2026-01-01T00:00:00")
        for _ in range(50):
            due = next_run(job, after, 0)
            assert due is not None and timedelta(0) < due - after <= timedelta(seconds=0.1)
            after = due

    @pytest.mark.parametrize(
        ("start", "after", "expected_local"),
        [
            # Spring forward: 24 real hours after 12:00 CET is 13:00 CEST.
            ("2026-03-28T12:00:00", "2026-03-28T12:00:00", "2026-03-29T13:00:00+02:00"),
            # Fall back: 24 real hours after 12:00 CEST is 11:00 CET.
            ("2026-10-24T12:00:00", "2026-10-24T11:00:00", "2026-10-25T11:00:00+01:00"),
        ],
    )
    def test_one_day_is_24_real_hours_across_dst(
        self, start: str, after: str, expected_local: str
    ) -> None:
        """An interval is elapsed time: across DST its wall-clock time shifts by an hour."""
        job = spec(interval="1d", start=start, timezone="Europe/Berlin")
        due = next_run(job, utc(after), 1)
        assert due is not None
        assert due.astimezone(BERLIN).isoformat() == expected_local


class TestNextRunCron:
    """Cron jobs run on the wall clock of their timezone."""

    @pytest.mark.parametrize(
        ("expression", "after", "expected_utc"),
        [
            ("*/5 * * * *", "2026-01-01T10:02:00", ["10:05", "10:10", "10:15"]),
            # Spring forward: 02:00-02:59 does not exist; both run at 03:00 CEST.
            ("0 2 * * *", "2026-03-28T12:00:00", ["01:00", "00:00", "00:00"]),
            ("30 2 * * *", "2026-03-28T12:00:00", ["01:00", "00:30", "00:30"]),
            # Fall back: 02:00-02:59 happens twice; the job runs in both.
            ("30 2 * * *", "2026-10-24T12:00:00", ["00:30", "01:30", "01:30"]),
            ("0 2 * * *", "2026-10-24T12:00:00", ["00:00", "01:00", "01:00"]),
        ],
    )
    def test_schedule(self, expression: str, after: str, expected_utc: list[str]) -> None:
        """Successive runs match croniter's DST handling, as documented."""
        job = spec(cron=expression, timezone="Europe/Berlin")
        moment = utc(after)
        times = []
        for runs in range(3):
            due = next_run(job, moment, runs)
            assert due is not None
            times.append(due.strftime("%H:%M"))
            moment = due
        assert times == expected_utc

    def test_no_run_before_start(self) -> None:
        """With start, the first run is the first cron time at or after start."""
        job = spec(cron="0 * * * *", start="2026-06-01T12:00:00")
        assert next_run(job, utc("2026-01-01T00:00:00"), 0) == utc("2026-06-01T12:00:00")


class TestNextRunLimits:
    """One-off jobs and repeats end the schedule."""

    def test_at_runs_once(self) -> None:
        """A naive ``at`` is in the job's timezone; after one run there is no next."""
        job = spec(at="2026-07-01T10:00:00", timezone="Europe/Berlin")
        assert next_run(job, utc("2026-07-01T00:00:00"), 0) == utc("2026-07-01T08:00:00")
        assert next_run(job, utc("2026-07-01T08:00:00"), 1) is None
        assert next_run(job, utc("2026-07-01T09:00:00"), 0) is None

    def test_repeats(self) -> None:
        """After ``repeats`` runs the job is done."""
        job = spec(interval="1m", repeats=2)
        assert next_run(job, utc("2026-01-01T00:00:00"), 1) is not None
        assert next_run(job, utc("2026-01-01T00:00:00"), 2) is None
