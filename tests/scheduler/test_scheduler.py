"""Tests for the running scheduler, on Trio's autojump clock (no real waiting)."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio
from structlog.testing import capture_logs
from trio.testing import MockClock

from daemon.exceptions import ConfigError, JobConflict, JobNotFound, ServiceNotFound
from daemon.scheduler import JobSpec, Scheduler

BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def job(name: str = "job", **settings: Any) -> JobSpec:
    return JobSpec.from_mapping({"name": name, "service": "svc", **settings}, where="test")


class WallClock:
    """Wall-clock time driven by Trio's clock, reading ``start`` when created."""

    def __init__(self, start: datetime) -> None:
        self.start = start.astimezone(UTC)
        self.origin = trio.current_time()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=trio.current_time() - self.origin)

    async def sleep_until(self, when: datetime) -> None:
        await trio.sleep((when - self()).total_seconds())


class Service:
    """The invoke boundary: records each call, optionally slow, failing or not deployed.

    Not deployed, it raises ServiceNotFound as the router does, and records nothing.
    """

    def __init__(
        self, clock: WallClock, *, duration: float = 0.0, fail: bool = False, deployed: bool = True
    ) -> None:
        self.clock = clock
        self.duration = duration
        self.fail = fail
        self.deployed = deployed
        self.calls: list[tuple[datetime, str, Any, float | None]] = []
        self.active = 0
        self.most_active = 0

    async def invoke(self, service: str, payload: Any, time_limit: float | None) -> None:
        if not self.deployed:
            raise ServiceNotFound(service)
        self.calls.append((self.clock(), service, payload, time_limit))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await trio.sleep(self.duration)
            if self.fail:
                raise RuntimeError("disk full")
        finally:
            self.active -= 1

    @property
    def times(self) -> list[datetime]:
        return [call[0] for call in self.calls]


def scheduler(jobs: list[JobSpec], service: Service, tmp_path: Path, **options: Any) -> Scheduler:
    return Scheduler(
        jobs, invoke=service.invoke, state_dir=tmp_path, clock=service.clock, **options
    )


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


class TestSchedules:
    """Jobs run at exactly the instants their schedule gives."""

    async def test_interval_with_start_and_timezone(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """Runs fall on start (read in the job's timezone) + k * interval, with payload."""
        clock = WallClock(utc("2026-12-04T07:00:00"))
        service = Service(clock)
        spec = job(
            interval="30s",
            start="2026-12-04T09:00:00",
            timezone="Europe/Berlin",
            payload={"folder": "/in"},
            timeout="10s",
        )
        await nursery.start(scheduler([spec], service, tmp_path).run)
        await clock.sleep_until(utc("2026-12-04T08:01:31"))
        assert service.times == [
            utc("2026-12-04T08:00:00"),
            utc("2026-12-04T08:00:30"),
            utc("2026-12-04T08:01:00"),
            utc("2026-12-04T08:01:30"),
        ]
        assert service.calls[0][1:] == ("svc", {"folder": "/in"}, 10.0)

    async def test_start_in_the_past_continues_on_the_grid(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A start long past gives the next grid point, not an immediate run."""
        clock = WallClock(utc("2026-12-04T08:00:10"))
        service = Service(clock)
        spec = job(interval="30s", start="2026-12-04T09:00:00", timezone="Europe/Berlin")
        await nursery.start(scheduler([spec], service, tmp_path).run)
        await clock.sleep_until(utc("2026-12-04T08:00:31"))
        assert service.times == [utc("2026-12-04T08:00:30")]

    @pytest.mark.parametrize(
        ("start", "expected_local"),
        [
            ("2026-03-28T12:00:00", ["12:00+0100", "13:00+0200", "13:00+0200"]),
            ("2026-10-24T12:00:00", ["12:00+0200", "11:00+0100", "11:00+0100"]),
        ],
    )
    async def test_daily_interval_across_dst(
        self,
        autojump_clock: MockClock,
        nursery: trio.Nursery,
        tmp_path: Path,
        start: str,
        expected_local: list[str],
    ) -> None:
        """A "1d" interval keeps 24 real hours, so its wall-clock time moves with DST."""
        clock = WallClock(datetime.fromisoformat(start).replace(tzinfo=BERLIN) - timedelta(hours=1))
        service = Service(clock)
        spec = job(interval="1d", start=start, timezone="Europe/Berlin")
        await nursery.start(scheduler([spec], service, tmp_path).run)
        await trio.sleep(3 * 86400)
        local = [t.astimezone(BERLIN).strftime("%H:%M%z") for t in service.times]
        assert local == expected_local

    @pytest.mark.parametrize(
        ("expression", "start", "expected_local"),
        [
            # Spring forward: the skipped 02:xx runs at 03:00 CEST, once.
            ("0 2 * * *", "2026-03-28T12:00:00", ["03-29 03:00+0200", "03-30 02:00+0200"]),
            ("30 2 * * *", "2026-03-28T12:00:00", ["03-29 03:00+0200", "03-30 02:30+0200"]),
            # Fall back: the repeated 02:xx runs in both offsets.
            (
                "30 2 * * *",
                "2026-10-24T12:00:00",
                ["10-25 02:30+0200", "10-25 02:30+0100", "10-26 02:30+0100"],
            ),
        ],
    )
    async def test_cron_across_dst(
        self,
        autojump_clock: MockClock,
        nursery: trio.Nursery,
        tmp_path: Path,
        expression: str,
        start: str,
        expected_local: list[str],
    ) -> None:
        """Cron follows Berlin's wall clock with croniter's gap/overlap rules."""
        clock = WallClock(utc(start))
        service = Service(clock)
        spec = job(cron=expression, timezone="Europe/Berlin")
        await nursery.start(scheduler([spec], service, tmp_path).run)
        await trio.sleep(2 * 86400)
        local = [t.astimezone(BERLIN).strftime("%m-%d %H:%M%z") for t in service.times]
        assert local == expected_local

    async def test_cron(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A cron job runs at each matching minute."""
        clock = WallClock(utc("2026-01-01T10:02:00"))
        service = Service(clock)
        await nursery.start(scheduler([job(cron="*/5 * * * *")], service, tmp_path).run)
        await clock.sleep_until(utc("2026-01-01T10:16:00"))
        assert service.times == [utc(f"2026-01-01T10:{m:02}:00") for m in (5, 10, 15)]

    async def test_at_runs_once(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A one-off job runs at its instant, then has no next run."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock)
        sched = scheduler([job(at="2026-01-01T01:00:00")], service, tmp_path)
        await nursery.start(sched.run)
        with capture_logs() as logs:
            await trio.sleep(86400)
        assert service.times == [utc("2026-01-01T01:00:00")]
        state = sched.get("job").state
        assert (state.runs, state.next_run, state.last_status) == (1, None, "ok")
        assert events(logs, "job_schedule_done") == [
            {"event": "job_schedule_done", "job": "job", "runs": 1, "log_level": "info"}
        ]

    async def test_repeats(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A job with repeats stops after that many runs."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock)
        spec = job(interval="10s", repeats=3, start="2026-01-01T00:00:00")
        sched = scheduler([spec], service, tmp_path)
        await nursery.start(sched.run)
        await trio.sleep(3600)
        assert service.times == [utc(f"2026-01-01T00:00:{s:02}") for s in (0, 10, 20)]
        assert sched.get("job").state.next_run is None

    async def test_jitter_delays_within_bound(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """Jitter delays each run by 0..jitter without moving the grid."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock)
        spec = job(interval="1m", jitter="20s", start="2026-01-01T00:00:00")
        await nursery.start(scheduler([spec], service, tmp_path).run)
        await trio.sleep(10 * 60 - 1)
        assert len(service.times) == 10
        for minute, when in enumerate(service.times):
            offset = when - utc("2026-01-01T00:00:00") - timedelta(minutes=minute)
            assert timedelta(0) <= offset <= timedelta(seconds=20)


class TestRuns:
    """How runs execute: no overlap, failures, unknown services, logging."""

    async def test_slow_job_never_overlaps(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A run due while the previous one is going is skipped and logged."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock, duration=25)
        spec = job(interval="10s", start="2026-01-01T00:00:00")
        await nursery.start(scheduler([spec], service, tmp_path).run)
        with capture_logs() as logs:
            await trio.sleep(95)
        assert service.times == [
            utc(f"2026-01-01T00:0{m}:{s}0") for m, s in ((0, 0), (0, 3), (1, 0), (1, 3))
        ]
        assert service.most_active == 1
        skipped = [entry["due"] for entry in events(logs, "job_skipped_overlap")]
        assert skipped == [
            utc(f"2026-01-01T00:0{m}:{s}0").isoformat()
            for m, s in ((0, 1), (0, 2), (0, 4), (0, 5), (1, 1), (1, 2))
        ]

    async def test_failing_service_keeps_the_job(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A raising service is logged with job, service and error; the job runs on."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock, fail=True)
        spec = job(interval="10s", start="2026-01-01T00:00:00")
        sched = scheduler([spec], service, tmp_path)
        await nursery.start(sched.run)
        with capture_logs() as logs:
            await trio.sleep(25)
        assert len(service.calls) == 3
        failed = events(logs, "job_failed")
        assert len(failed) == 3
        assert failed[0]["job"] == "job" and failed[0]["service"] == "svc"
        assert failed[0]["error"] == "RuntimeError: disk full"
        finished = events(logs, "job_finished")
        assert [e["status"] for e in finished] == ["failed"] * 3
        state = sched.get("job").state
        assert (state.last_status, state.last_error) == ("failed", "RuntimeError: disk full")

    async def test_started_and_finished_are_logged_with_duration(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """Each run logs job_started and job_finished with its duration."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock, duration=2.5)
        spec = job(interval="10s", start="2026-01-01T00:00:00")
        sched = scheduler([spec], service, tmp_path)
        await nursery.start(sched.run)
        with capture_logs() as logs:
            await trio.sleep(5)
        assert events(logs, "job_started") == [
            {"event": "job_started", "job": "job", "service": "svc", "log_level": "info"}
        ]
        assert events(logs, "job_finished") == [
            {"event": "job_finished", "job": "job", "status": "ok", "duration": 2.5,
             "log_level": "info"}
        ]  # fmt: skip
        assert sched.get("job").state.last_duration == 2.5

    async def test_unknown_service(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A job naming an undeployed service logs a clear error and invokes nothing."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock, deployed=False)
        spec = job(interval="10s", start="2026-01-01T00:00:00")
        sched = scheduler([spec], service, tmp_path)
        await nursery.start(sched.run)
        with capture_logs() as logs:
            await trio.sleep(15)
        assert service.calls == []
        assert len(events(logs, "job_service_unknown")) == 2
        assert sched.get("job").state.last_error == "service 'svc' is not deployed"

    async def test_missing_service_called_by_the_job_is_a_failure(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """The job's service calling one that is not deployed fails the run like any error."""
        clock = WallClock(utc("2026-01-01T00:00:00"))

        async def invoke(service: str, payload: Any, time_limit: float | None) -> None:
            raise ServiceNotFound("other")  # what the router raises for svc's own call

        spec = job(interval="10s", start="2026-01-01T00:00:00")
        sched = Scheduler([spec], invoke=invoke, state_dir=tmp_path, clock=clock)
        await nursery.start(sched.run)
        with capture_logs() as logs:
            await trio.sleep(5)
        assert events(logs, "job_service_unknown") == []
        [failed] = events(logs, "job_failed")
        error = "ServiceNotFound: no service named 'other' is deployed"
        assert (failed["service"], failed["error"]) == ("svc", error)
        assert sched.get("job").state.last_error == error


class TestAdmin:
    """The admin operations change a running schedule at once."""

    async def test_pause_and_resume(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A paused job does not run; resumed, it continues at the next grid point."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock)
        sched = scheduler([job(interval="10s", start="2026-01-01T00:00:00")], service, tmp_path)
        await nursery.start(sched.run)
        await trio.sleep(25)
        state = sched.pause("job").state
        assert (state.paused, state.next_run) == (True, None)
        await trio.sleep(100)
        assert len(service.calls) == 3
        assert sched.resume("job").state.next_run == utc("2026-01-01T00:02:10")
        await trio.sleep(10)
        assert service.times[3:] == [utc("2026-01-01T00:02:10")]

    async def test_run_now(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """run_now runs at once, returns the outcome and leaves the schedule alone."""
        clock = WallClock(utc("2026-01-01T00:30:00"))
        service = Service(clock, duration=3)
        sched = scheduler([job(interval="1h")], service, tmp_path)
        await nursery.start(sched.run)
        status = await sched.run_now("job")
        assert service.times == [utc("2026-01-01T00:30:00")]
        assert (status.state.last_status, status.state.runs, status.running) == ("ok", 0, False)
        assert status.state.next_run == utc("2026-01-01T01:00:00")
        mapping = json.loads(json.dumps(status.to_mapping()))
        assert mapping["spec"]["name"] == "job" and mapping["origin"] == "config"
        assert mapping["last_run"] == "2026-01-01T00:30:00+00:00"
        assert mapping["next_run"] == "2026-01-01T01:00:00+00:00"

    async def test_run_now_refuses_while_running(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A second run_now, or a scheduled run, never overlaps a running one."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        entered, release = trio.Event(), trio.Event()
        calls = []

        async def invoke(service: str, payload: Any, time_limit: float | None) -> None:
            calls.append(clock())
            entered.set()
            await release.wait()

        sched = Scheduler([job(interval="1m")], invoke=invoke, state_dir=tmp_path, clock=clock)
        await nursery.start(sched.run)
        await sched.run_now("job", wait=False)
        await entered.wait()
        assert sched.get("job").running
        with pytest.raises(JobConflict, match="'job' is already running"):
            await sched.run_now("job")
        with capture_logs() as logs:
            await trio.sleep(90)
        assert len(events(logs, "job_skipped_overlap")) == 1
        release.set()
        await trio.sleep(60)
        assert len(calls) == 2

    async def test_add_update_delete_while_running(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """Admin edits take effect at once, without waiting for the old schedule."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock)
        sched = scheduler([], service, tmp_path)
        await nursery.start(sched.run)
        added = sched.add(job("new", interval="1h", start="2026-01-01T00:00:05"))
        assert (added.origin, added.state.next_run) == ("admin", utc("2026-01-01T00:00:05"))
        await trio.sleep(10)
        sched.update(job("new", interval="20s", start="2026-01-01T00:00:05"))
        await trio.sleep(40)
        sched.delete("new")
        await trio.sleep(3600)
        assert service.times == [
            utc("2026-01-01T00:00:05"),
            utc("2026-01-01T00:00:25"),
            utc("2026-01-01T00:00:45"),
        ]
        assert sched.list_jobs() == []

    async def test_rejections(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """Bad admin operations raise clear errors and change nothing."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock)
        known = {"svc"}
        sched = scheduler(
            [job("conf", interval="1h")], service, tmp_path, is_known_service=known.__contains__
        )
        await nursery.start(sched.run)
        with pytest.raises(JobConflict, match="'conf' already exists"):
            sched.add(job("conf", interval="1m"))
        with pytest.raises(JobConflict, match="comes from the configuration file"):
            sched.update(job("conf", interval="1m"))
        with pytest.raises(JobConflict, match="comes from the configuration file"):
            sched.delete("conf")
        with pytest.raises(ConfigError, match=r"job\.service: expected the name of a deployed"):
            sched.add(JobSpec(name="x", service="nope", interval=60.0))
        for operation in (sched.get, sched.delete, sched.pause, sched.resume):
            with pytest.raises(JobNotFound, match="no scheduler job named 'ghost'"):
                operation("ghost")
        with pytest.raises(JobNotFound):
            await sched.run_now("ghost")
        assert [s.spec.name for s in sched.list_jobs()] == ["conf"]
        assert sched.get("conf").spec.interval == 3600.0

    async def test_replace_all_keeps_unchanged_state(
        self, autojump_clock: MockClock, nursery: trio.Nursery, tmp_path: Path
    ) -> None:
        """A config reload keeps unchanged jobs' state, resets changed ones, drops removed."""
        clock = WallClock(utc("2026-01-01T00:00:00"))
        service = Service(clock)
        same = job("same", interval="10s", start="2026-01-01T00:00:00")
        changed = job("changed", interval="10s", start="2026-01-01T00:00:00")
        sched = scheduler([same, changed, job("gone", interval="10s")], service, tmp_path)
        await nursery.start(sched.run)
        await trio.sleep(25)
        sched.replace_all([same, job("changed", interval="1h", start="2026-01-01T00:00:00")])
        statuses = {s.spec.name: s for s in sched.list_jobs()}
        assert sorted(statuses) == ["changed", "same"]
        assert (statuses["same"].state.runs, statuses["changed"].state.runs) == (3, 0)
        assert statuses["changed"].state.next_run == utc("2026-01-01T01:00:00")
        assert statuses["changed"].state.last_status == "ok"


class TestRestart:
    """State survives a restart, and missed runs follow the job's policy."""

    async def run_for(self, sched: Scheduler, seconds: float, edit: Any = None) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)
            if edit is not None:
                edit(sched)
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()

    @pytest.mark.parametrize(
        ("policy", "expected"),
        [
            ("run_once", ["05:00:30", "06:00:00"]),
            ("skip", ["06:00:00"]),
        ],
    )
    async def test_missed_runs(
        self, autojump_clock: MockClock, tmp_path: Path, policy: str, expected: list[str]
    ) -> None:
        """Down from 01:30 to 05:00:30: run_once runs at once, skip waits for the grid."""
        spec = job(interval="1h", start="2026-01-01T00:00:00", missed=policy)
        service = Service(WallClock(utc("2026-01-01T00:00:00")))
        await self.run_for(scheduler([spec], service, tmp_path), 90 * 60)
        assert len(service.calls) == 2

        state = json.loads((tmp_path / "scheduler.json").read_text())
        saved = state["jobs"]["job"]
        assert (saved["origin"], saved["state"]["runs"]) == ("config", 2)
        assert saved["state"]["next_run"] == "2026-01-01T02:00:00+00:00"

        service = Service(WallClock(utc("2026-01-01T05:00:30")))
        with capture_logs() as logs:
            await self.run_for(scheduler([spec], service, tmp_path), 3600)
        assert [t.strftime("%H:%M:%S") for t in service.times] == expected
        assert events(logs, "job_runs_missed")[0]["due"] == "2026-01-01T02:00:00+00:00"

    @pytest.mark.parametrize(("policy", "runs"), [("run_once", 1), ("skip", 0)])
    async def test_missed_one_off(
        self, autojump_clock: MockClock, tmp_path: Path, policy: str, runs: int
    ) -> None:
        """An ``at`` job due while down runs at start-up only under run_once."""
        spec = job(at="2026-01-01T02:00:00", missed=policy)
        service = Service(WallClock(utc("2026-01-01T00:00:00")))
        await self.run_for(scheduler([spec], service, tmp_path), 60)
        service = Service(WallClock(utc("2026-01-01T03:00:00")))
        await self.run_for(scheduler([spec], service, tmp_path), 86400)
        assert service.times == [utc("2026-01-01T03:00:00")] * runs

    async def test_admin_jobs_and_pause_persist(
        self, autojump_clock: MockClock, tmp_path: Path
    ) -> None:
        """Admin jobs and pauses survive a restart; jobs gone from config are dropped."""
        service = Service(WallClock(utc("2026-01-01T00:00:00")))

        def edit(sched: Scheduler) -> None:
            sched.add(job("admin", interval="1m", payload=[1, 2]))
            sched.pause("kept")

        jobs = [job("old", interval="1m"), job("kept", interval="1m")]
        await self.run_for(scheduler(jobs, service, tmp_path), 30, edit)

        service = Service(WallClock(utc("2026-01-01T00:10:00")))
        second = scheduler([job("kept", interval="1m")], service, tmp_path)
        await self.run_for(second, 1)
        statuses = {s.spec.name: s for s in second.list_jobs()}
        assert sorted(statuses) == ["admin", "kept"]
        assert (statuses["admin"].origin, statuses["admin"].spec.payload) == ("admin", [1, 2])
        assert (statuses["kept"].state.paused, statuses["kept"].state.next_run) == (True, None)
        state = json.loads((tmp_path / "scheduler.json").read_text())
        assert sorted(state["jobs"]) == ["admin", "kept"]

    async def test_finished_repeats_stay_finished(
        self, autojump_clock: MockClock, tmp_path: Path
    ) -> None:
        """A job whose repeats are used up does not start over after a restart."""
        spec = job(interval="10s", repeats=2, start="2026-01-01T00:00:00")
        service = Service(WallClock(utc("2026-01-01T00:00:00")))
        await self.run_for(scheduler([spec], service, tmp_path), 60)
        assert len(service.calls) == 2

        service = Service(WallClock(utc("2026-01-01T01:00:00")))
        second = scheduler([spec], service, tmp_path)
        await self.run_for(second, 3600)
        assert service.calls == []
        state = second.get("job").state
        assert (state.runs, state.next_run, state.last_status) == (2, None, "ok")

    async def test_paused_job_keeps_its_run_count(
        self, autojump_clock: MockClock, tmp_path: Path
    ) -> None:
        """A paused job's run count survives a restart, and resume continues the repeats."""
        spec = job(interval="10s", repeats=3, start="2026-01-01T00:00:00")
        service = Service(WallClock(utc("2026-01-01T00:00:00")))
        await self.run_for(scheduler([spec], service, tmp_path), 15)

        def pause(sched: Scheduler) -> None:
            sched.pause("job")

        service = Service(WallClock(utc("2026-01-01T00:00:15")))
        await self.run_for(scheduler([spec], service, tmp_path), 1, pause)

        service = Service(WallClock(utc("2026-01-01T01:00:00")))
        third = scheduler([spec], service, tmp_path)
        async with trio.open_nursery() as nursery:
            await nursery.start(third.run)
            assert (third.get("job").state.runs, third.get("job").state.paused) == (2, True)
            third.resume("job")
            await trio.sleep(3600)
            nursery.cancel_scope.cancel()
        assert service.times == [utc("2026-01-01T01:00:00")]

    async def test_unreadable_state_file(self, autojump_clock: MockClock, tmp_path: Path) -> None:
        """A corrupt state file stops start-up with an error naming it."""
        (tmp_path / "scheduler.json").write_text("{not json")
        service = Service(WallClock(utc("2026-01-01T00:00:00")))
        with pytest.raises(ConfigError, match=r"scheduler\.json: the scheduler state file"):
            await scheduler([], service, tmp_path).run()
