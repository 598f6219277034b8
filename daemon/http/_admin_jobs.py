"""Admin routes for the scheduler: ``/admin/scheduler/jobs...``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from quart import Response, request

from ..exceptions import ConfigError, JobConflict, JobNotFound
from ..scheduler import JobSpec, JobStatus, Scheduler
from ._admin_base import (
    AdminContext,
    Routes,
    json_error,
    json_response,
    read_json,
    request_body,
)

__all__ = ["add_job_routes"]


#: What a scheduler call gives back: one job, every job, or nothing (deleted).
_Result = JobStatus | list[JobStatus] | None


def add_job_routes(routes: Routes, context: AdminContext) -> None:
    """List, create, update, delete, pause, resume and run jobs now."""

    @routes.add("GET", "/admin/scheduler/jobs", "Scheduler jobs: schedule, state, last run.")
    async def jobs() -> Response:
        return await _job_call(lambda scheduler: scheduler.list_jobs())

    @routes.add("POST", "/admin/scheduler/jobs", "Create a job (the same keys as in the config).")
    async def create_job() -> Response:
        spec = await _job_spec()
        if isinstance(spec, Response):
            return spec
        return await _job_call(lambda scheduler: scheduler.add(spec), 201)

    @routes.add("GET", "/admin/scheduler/jobs/{name}", "One job.")
    async def job(name: str) -> Response:
        return await _job_call(lambda scheduler: scheduler.get(name))

    @routes.add("PUT", "/admin/scheduler/jobs/{name}", "Replace a job created through the API.")
    async def update_job(name: str) -> Response:
        spec = await _job_spec(name)
        if isinstance(spec, Response):
            return spec
        return await _job_call(lambda scheduler: scheduler.update(spec))

    @routes.add("DELETE", "/admin/scheduler/jobs/{name}", "Delete a job created through the API.")
    async def delete_job(name: str) -> Response:
        return await _job_call(lambda scheduler: scheduler.delete(name), 204)

    @routes.add("POST", "/admin/scheduler/jobs/{name}/pause", "Pause a job.")
    async def pause_job(name: str) -> Response:
        return await _job_call(lambda scheduler: scheduler.pause(name))

    @routes.add("POST", "/admin/scheduler/jobs/{name}/resume", "Resume a paused job.")
    async def resume_job(name: str) -> Response:
        return await _job_call(lambda scheduler: scheduler.resume(name))

    @routes.add("POST", "/admin/scheduler/jobs/{name}/run", "Run a job now and wait for it.")
    async def run_job(name: str) -> Response:
        return await _job_call(lambda scheduler: scheduler.run_now(name))

    async def _forward_to_worker_0() -> Response:
        """Jobs live in worker 0: hand it the request as it came."""
        if 0 not in context.machine.peers:
            return json_error(503, "scheduler jobs run in worker 0, which cannot be reached")
        answer = await context.machine.request(
            0,
            request.method,
            request.path,
            content=await request_body(),
            query=request.query_string.decode(),
            timeout=None,  # run-now waits for the job
        )
        return Response(answer.content, status=answer.status_code, content_type="application/json")

    async def _job_spec(name: str | None = None) -> JobSpec | Response:
        data, refused = await read_json()
        if refused is not None:
            return refused
        data = {} if data is None else data
        if name is not None:
            data = {**data, "name": name} if isinstance(data, dict) else data
        try:
            return JobSpec.from_mapping(data, where="job")
        except ConfigError as exc:
            return json_error(400, str(exc))

    async def _job_call(
        call: Callable[[Scheduler], _Result | Awaitable[_Result]], ok: int = 200
    ) -> Response:
        """Make ``call`` on the scheduler (run_now's is a coroutine), its errors as statuses."""
        if context.scheduler is None:
            return await _forward_to_worker_0()
        try:
            result = call(context.scheduler)
            if inspect.isawaitable(result):
                result = await result
        except JobNotFound as exc:
            return json_error(404, str(exc))
        except JobConflict as exc:
            return json_error(409, str(exc))
        except ConfigError as exc:
            return json_error(400, str(exc))
        if result is None:
            return Response(b"", status=ok)
        if isinstance(result, list):
            return json_response({"jobs": [job.to_mapping() for job in result]}, ok)
        return json_response(result.to_mapping(), ok)
