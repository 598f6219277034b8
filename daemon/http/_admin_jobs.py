"""Admin routes for the scheduler: ``/admin/scheduler/jobs...``."""

from __future__ import annotations

import inspect
from typing import Any

from quart import Response, request

from ..exceptions import ConfigError, JobConflict, JobNotFound
from ..scheduler import JobSpec
from ._admin_base import AdminContext, Routes, json_error, json_response, read_json

__all__ = ["add_job_routes"]


def add_job_routes(routes: Routes, context: AdminContext) -> None:
    """List, create, update, delete, pause, resume and run jobs now."""

    @routes.add("GET", "/admin/scheduler/jobs", "Scheduler jobs: schedule, state, last run.")
    async def jobs() -> Response:
        return await _job_call("list_jobs", None)

    @routes.add("POST", "/admin/scheduler/jobs", "Create a job (the same keys as in the config).")
    async def create_job() -> Response:
        return await _job_call("add", await _job_spec(), 201)

    @routes.add("GET", "/admin/scheduler/jobs/{name}", "One job.")
    async def job(name: str) -> Response:
        return await _job_call("get", name)

    @routes.add("PUT", "/admin/scheduler/jobs/{name}", "Replace a job created through the API.")
    async def update_job(name: str) -> Response:
        spec = await _job_spec(name)
        return await _job_call("update", spec)

    @routes.add("DELETE", "/admin/scheduler/jobs/{name}", "Delete a job created through the API.")
    async def delete_job(name: str) -> Response:
        return await _job_call("delete", name, 204)

    @routes.add("POST", "/admin/scheduler/jobs/{name}/pause", "Pause a job.")
    async def pause_job(name: str) -> Response:
        return await _job_call("pause", name)

    @routes.add("POST", "/admin/scheduler/jobs/{name}/resume", "Resume a paused job.")
    async def resume_job(name: str) -> Response:
        return await _job_call("resume", name)

    @routes.add("POST", "/admin/scheduler/jobs/{name}/run", "Run a job now and wait for it.")
    async def run_job(name: str) -> Response:
        return await _job_call("run_now", name)

    async def _forward_to_worker_0() -> Response:
        """Jobs live in worker 0: hand it the request as it came."""
        if 0 not in context.machine.peers:
            return json_error(503, "scheduler jobs run in worker 0, which cannot be reached")
        body = await request.get_data(as_text=False)
        answer = await context.machine.request(
            0,
            request.method,
            request.path,
            content=body if isinstance(body, bytes) else body.encode(),
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

    async def _job_call(action: str, argument: Any, ok: int = 200) -> Response:
        """Run scheduler method ``action``, mapping its errors to statuses."""
        if isinstance(argument, Response):
            return argument  # the request was already refused
        if context.scheduler is None:
            return await _forward_to_worker_0()
        method = getattr(context.scheduler, action)
        try:
            result = method() if argument is None else method(argument)
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
