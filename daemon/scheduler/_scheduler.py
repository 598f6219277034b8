"""The running scheduler: one timer task per job, runs invoked by service name.

Each scheduled job has a timer task in the scheduler's nursery, inside its own
cancel scope: it sleeps until the job's next due instant, starts a run, and
computes the next one with `next_run`. Editing, pausing or deleting a job
cancels that scope and starts a fresh timer, so a change takes effect at once.
Runs execute in the scheduler's nursery too, so a slow run never delays its
timer; a run falling due while the previous one is still going is skipped and
logged (``job_skipped_overlap``), never started twice. A failing service is
logged (``job_failed``) and the job keeps its schedule.

Jobs come from two places. Config jobs are owned by the configuration file:
`replace_all` swaps them on reload and the admin API may pause, resume and run
them but not edit or delete them. Admin jobs are created through `add` and
live only in the state file, so they survive restarts. A config job of the same
name wins over an admin job (logged as ``job_admin_shadowed``).

``runs`` counts scheduled runs, the ones ``repeats`` limits; `run_now` is an
extra run that neither counts nor moves the schedule. Pausing drops the runs
that fall due while paused; `resume` continues with the next grid point.

Wall-clock time comes from ``clock`` (aware UTC ``datetime``, default the
system clock); waiting uses Trio's clock. Tests pass a clock derived from
``trio.current_time()`` so that Trio's autojump clock drives both.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
import trio

from ..exceptions import ConfigError, JobConflict, JobNotFound, ServiceNotFound
from ._jobs import JobSpec, next_run
from ._state import JobState, Origin, Status, StoredJob, dump_state, load_state, write_state

log = structlog.get_logger(__name__)

Invoke = Callable[[str, Any, float | None], Awaitable[Any]]
Clock = Callable[[], datetime]

# "Due at or after now" is "due strictly after a moment before now": a job whose
# start is exactly now runs now.
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job for the admin API: its spec, origin, whether it runs, its state."""

    spec: JobSpec
    origin: Origin
    running: bool
    #: A copy, so later runs do not change this snapshot.
    state: JobState

    def to_mapping(self) -> dict[str, Any]:
        """Return a JSON-safe mapping: the spec under ``"spec"``, datetimes as ISO strings."""
        return {
            "spec": self.spec.to_mapping(),
            "origin": self.origin,
            "running": self.running,
            **self.state.to_mapping(),
        }


@dataclass
class _Job(StoredJob):
    """A job the scheduler holds: its spec, origin and state, plus its timer's scope."""

    timer: trio.CancelScope | None = None


class Scheduler:
    """Runs jobs on their schedules by invoking services by name.

    ``invoke(service, payload, timeout)`` performs one run and raises
    ServiceNotFound, as the router does, when the service is not deployed.
    ``state_dir`` holds ``scheduler.json``. ``is_known_service`` tells whether
    a service is deployed, to refuse admin jobs naming another; without it
    every service is assumed known. ``clock`` returns the current wall-clock
    time as an aware UTC datetime. Job names are unique: the configuration
    (``SchedulerConfig``) refuses duplicates.
    """

    def __init__(
        self,
        jobs: Iterable[JobSpec],
        *,
        invoke: Invoke,
        state_dir: Path,
        is_known_service: Callable[[str], bool] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._config_specs = {spec.name: spec for spec in jobs}
        self._invoke = invoke
        self._path = state_dir / "scheduler.json"
        self._is_known_service = is_known_service
        self._clock: Clock = clock or _system_clock
        self._jobs: dict[str, _Job] = {}
        # Names of the jobs with a run in progress: the no-overlap guard. Kept
        # by name so that it holds across an edit of the job.
        self._running: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._dirty = trio.Event()

    async def run(
        self, *, task_status: trio.TaskStatus[Scheduler] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Load the state, apply the missed-run policy and run jobs until cancelled.

        ``nursery.start(scheduler.run)`` returns the scheduler once every job's
        timer is armed. The state file is written after every change, and a
        last time, shielded, on the way out.
        """
        stored = await trio.to_thread.run_sync(load_state, self._path)
        self._restore(stored, self._now())
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write_loop)
                for job in self._jobs.values():
                    self._arm(job)
                log.info("scheduler_started", jobs=len(self._jobs), state=str(self._path))
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._write()

    # -- admin operations -------------------------------------------------

    def list_jobs(self) -> list[JobStatus]:
        """Return the status of every job, sorted by name."""
        return [self._status(self._jobs[name]) for name in sorted(self._jobs)]

    def get(self, name: str) -> JobStatus:
        """Return one job's status; raises JobNotFound."""
        return self._status(self._job(name))

    def add(self, spec: JobSpec) -> JobStatus:
        """Create an admin job, persisted in the state file.

        Raises JobConflict if the name is taken, ConfigError if the service is unknown.
        """
        if spec.name in self._jobs:
            raise JobConflict(f"a scheduler job named {spec.name!r} already exists")
        self._validate(spec)
        job = _Job(spec, "admin", JobState())
        self._jobs[spec.name] = job
        self._reschedule(job)
        log.info("job_added", job=spec.name, service=spec.service)
        return self._status(job)

    def update(self, spec: JobSpec) -> JobStatus:
        """Replace an admin job's spec (matched by name); its schedule restarts from now.

        Raises JobNotFound, JobConflict for a config job, ConfigError if the service
        is unknown.
        """
        job = self._admin_job(spec.name, "edit")
        self._validate(spec)
        if spec != job.spec:
            _renew(job, spec)
            self._reschedule(job)
            log.info("job_updated", job=spec.name, service=spec.service)
        return self._status(job)

    def delete(self, name: str) -> None:
        """Delete an admin job; a run in progress finishes. Raises JobNotFound, JobConflict."""
        job = self._admin_job(name, "delete")
        _cancel_timer(job)
        del self._jobs[name]
        self._mark_dirty()
        log.info("job_deleted", job=name)

    def pause(self, name: str) -> JobStatus:
        """Stop scheduling a job until `resume`; a run in progress finishes."""
        job = self._job(name)
        job.state.paused = True
        self._reschedule(job)
        log.info("job_paused", job=name)
        return self._status(job)

    def resume(self, name: str) -> JobStatus:
        """Schedule a paused job again from its next grid point."""
        job = self._job(name)
        job.state.paused = False
        self._reschedule(job)
        log.info("job_resumed", job=name)
        return self._status(job)

    async def run_now(self, name: str, *, wait: bool = True) -> JobStatus:
        """Run a job now, outside its schedule, and (if ``wait``) until it finishes.

        The run belongs to the scheduler: cancelling the caller does not cancel
        it. Returns the job's status, with the run's outcome if ``wait``.
        Raises JobNotFound, or JobConflict if the job is running.
        """
        job = self._job(name)
        if self._nursery is None:
            raise RuntimeError("the scheduler is not running")
        if name in self._running:
            raise JobConflict(f"scheduler job {name!r} is already running")
        finished = trio.Event()
        self._running.add(name)
        self._nursery.start_soon(self._execute, job, finished)
        if wait:
            await finished.wait()
        return self._status(job)

    def replace_all(self, specs: Iterable[JobSpec]) -> None:
        """Replace the config jobs (on config reload); unchanged ones keep their state."""
        new = {spec.name: spec for spec in specs}
        for name, job in list(self._jobs.items()):
            if job.origin == "config" and name not in new:
                _cancel_timer(job)
                del self._jobs[name]
                log.info("job_deleted", job=name)
        for name, spec in new.items():
            current = self._jobs.get(name)
            if current is None:
                current = self._jobs[name] = _Job(spec, "config", JobState())
            elif current.origin == "config" and current.spec == spec:
                continue
            else:
                if current.origin == "admin":
                    log.warning("job_admin_shadowed", job=name)
                current.origin = "config"
                _renew(current, spec)
            self._reschedule(current)
        self._config_specs = new

    # -- scheduling -------------------------------------------------------

    def _restore(self, stored: dict[str, StoredJob], now: datetime) -> None:
        """Build the job table from config and state, applying the missed-run policy."""
        entries: list[tuple[JobSpec, Origin]] = [
            (spec, "config") for spec in self._config_specs.values()
        ]
        for name, entry in stored.items():
            if entry.origin == "admin":
                if name in self._config_specs:
                    log.warning("job_admin_shadowed", job=name)
                else:
                    entries.append((entry.spec, "admin"))
        for spec, origin in entries:
            previous = stored.get(spec.name)
            job = _Job(spec, origin, previous.state if previous is not None else JobState())
            self._jobs[spec.name] = job
            due = job.state.next_run
            if previous is None or previous.spec != spec:
                _renew(job, spec)
                self._plan(job, now)
            elif due is None:
                # Paused, disabled or done: planning again keeps it so, with its run count.
                self._plan(job, now)
            elif due <= now:
                log.info("job_runs_missed", job=spec.name, due=due.isoformat(), policy=spec.missed)
                if spec.missed == "run_once":
                    job.state.next_run = now
                else:
                    self._plan(job, now)
        self._mark_dirty()

    def _plan(self, job: _Job, now: datetime) -> None:
        """Set the job's next due instant: the first grid point from ``now`` on."""
        if _schedulable(job):
            job.state.next_run = next_run(job.spec, now - _JUST_BEFORE, job.state.runs)
        else:
            job.state.next_run = None

    def _reschedule(self, job: _Job) -> None:
        self._plan(job, self._now())
        self._arm(job)
        self._mark_dirty()

    def _arm(self, job: _Job) -> None:
        """(Re)start the job's timer task, or just stop it if nothing is due."""
        _cancel_timer(job)
        if job.state.next_run is not None and self._nursery is not None:
            job.timer = trio.CancelScope()
            self._nursery.start_soon(self._timer, job, job.timer)

    async def _timer(self, job: _Job, scope: trio.CancelScope) -> None:
        with scope:
            while (due := job.state.next_run) is not None:
                jitter = random.uniform(0, job.spec.jitter)
                await trio.sleep_until(self._deadline(due) + jitter)
                if scope.cancel_called:
                    # An edit cancelled us after our sleep had already ended.
                    return
                self._fire(job, due)
                # Grid points that passed while we were late are not caught up.
                job.state.next_run = next_run(job.spec, max(due, self._now()), job.state.runs)
                self._mark_dirty()
            log.info("job_schedule_done", job=job.spec.name, runs=job.state.runs)

    def _fire(self, job: _Job, due: datetime) -> None:
        """Start a scheduled run unless the previous run is still going."""
        name = job.spec.name
        if name in self._running:
            log.warning("job_skipped_overlap", job=name, due=due.isoformat())
            return
        assert self._nursery is not None  # timers run only inside run()'s nursery
        job.state.runs += 1
        self._running.add(name)
        self._nursery.start_soon(self._execute, job, None)

    async def _execute(self, job: _Job, finished: trio.Event | None) -> None:
        """Perform one run; the caller has added the job's name to ``_running``."""
        spec = job.spec
        job.state.last_run = self._now()
        began = trio.current_time()
        status: Status = "ok"
        error: str | None = None
        log.info("job_started", job=spec.name, service=spec.service)
        try:
            await self._invoke(spec.service, spec.payload, spec.timeout)
        except Exception as exc:  # the error boundary: a failing run must not stop its job
            status = "failed"
            if isinstance(exc, ServiceNotFound) and exc.name == spec.service:
                error = f"service {spec.service!r} is not deployed"
                log.error("job_service_unknown", job=spec.name, service=spec.service)
            else:  # the service failed, possibly calling another one that is missing
                error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "job_failed", job=spec.name, service=spec.service, error=error, exc_info=exc
                )
        finally:
            self._running.discard(spec.name)
            if finished is not None:
                finished.set()
        duration = trio.current_time() - began
        job.state.last_status, job.state.last_error = status, error
        job.state.last_duration = duration
        self._mark_dirty()
        log.info("job_finished", job=spec.name, status=status, duration=round(duration, 3))

    # -- persistence ------------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty.set()

    def _now(self) -> datetime:
        # In UTC whatever the clock gives: datetimes sharing a tzinfo subtract as
        # wall-clock times, which is wrong across DST.
        return self._clock().astimezone(UTC)

    def _deadline(self, when: datetime) -> float:
        """Map a wall-clock instant to Trio's clock, for `trio.sleep_until`."""
        return trio.current_time() + (when - self._now()).total_seconds()

    async def _write_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await self._write()

    async def _write(self) -> None:
        """Write the state file if anything changed since the last write."""
        if not self._dirty.is_set():
            return
        self._dirty = trio.Event()
        document = dump_state(self._jobs)
        # Writes never overlap: the loop writes one at a time, and run's last write
        # comes after the loop has ended (a thread call is never abandoned).
        await trio.to_thread.run_sync(write_state, self._path, document)

    # -- helpers ----------------------------------------------------------

    def _job(self, name: str) -> _Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise JobNotFound(name) from None

    def _admin_job(self, name: str, action: str) -> _Job:
        job = self._job(name)
        if job.origin != "admin":
            raise JobConflict(
                f"cannot {action} scheduler job {name!r}: it comes from the configuration "
                "file; change it there and reload"
            )
        return job

    def _validate(self, spec: JobSpec) -> None:
        """Check what `JobSpec.from_mapping` cannot: that an admin job's service is deployed.

        Raises ConfigError naming the service.
        """
        if self._is_known_service is not None and not self._is_known_service(spec.service):
            raise ConfigError(
                "job.service: expected the name of a deployed service, "
                f"got {spec.service!r}, which is not deployed"
            )

    def _status(self, job: _Job) -> JobStatus:
        return JobStatus(
            spec=job.spec,
            origin=job.origin,
            running=job.spec.name in self._running,
            state=dataclasses.replace(job.state),
        )


def _renew(job: _Job, spec: JobSpec) -> None:
    """Give the job a new spec: its run count and schedule restart, its history stays."""
    job.spec = spec
    job.state = dataclasses.replace(job.state, runs=0, next_run=None)


def _schedulable(job: _Job) -> bool:
    return job.spec.enabled and not job.state.paused


def _cancel_timer(job: _Job) -> None:
    if job.timer is not None:
        job.timer.cancel()
        job.timer = None


def _system_clock() -> datetime:
    return datetime.now(UTC)
