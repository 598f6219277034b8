"""The scheduler: interval, cron and one-off jobs that invoke a service by name.

See `_jobs` for the meaning of a job's settings (DST, missed runs) and
`_scheduler` for how jobs run, overlap, persist and are edited.
"""

from __future__ import annotations

from ._jobs import JobSpec, MissedPolicy, next_run
from ._scheduler import Clock, Invoke, JobStatus, Scheduler
from ._state import Origin, Status

__all__ = [
    "Clock",
    "Invoke",
    "JobSpec",
    "JobStatus",
    "MissedPolicy",
    "Origin",
    "Scheduler",
    "Status",
    "next_run",
]
