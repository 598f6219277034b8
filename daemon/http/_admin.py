"""The admin JSON API under ``/admin``, and ``/metrics``: a quart-trio app.

Every route but health and readiness needs ``Authorization: Bearer <token>``.
Routes are declared once with `_Routes.add`, which registers them with Quart
and describes them in the OpenAPI document, so the two cannot drift apart.
Secrets are shown as set or unset, never their value.
"""

from __future__ import annotations

import base64
import hmac
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio
from quart import Quart, Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .._actor import Message
from .._config import Config, RestChannel
from .._deployer import Deployer
from .._router import Router, new_cid
from .._version import __version__
from ..connections import Connections
from ..exceptions import ConfigError, JobConflict, JobNotFound, ServiceNotFound
from ..scheduler import JobSpec, Scheduler
from ._channels import ChannelGateway, status_for
from ._errors import error_document
from ._metrics import CONTENT_TYPE, metrics_text

__all__ = ["AdminContext", "create_admin_app"]

log = structlog.get_logger(__name__)

#: Admin request bodies (invoke payloads) are small JSON documents.
MAX_ADMIN_BODY = 1024 * 1024


@dataclass
class AdminContext:
    """What the admin API reads and drives in the running daemon."""

    config: Config
    router: Router
    deployer: Deployer
    gateway: ChannelGateway
    token: str
    #: Re-reads the configuration file and applies what can change live.
    reload: Callable[[], Awaitable[dict[str, Any]]]
    connections: Connections
    scheduler: Scheduler
    ready: bool = False
    routes: list[dict[str, Any]] = field(default_factory=list)


Handler = Callable[..., Awaitable[Any]]


class _Routes:
    """Registers admin routes with Quart and records them for the OpenAPI document."""

    def __init__(self, app: Quart, context: AdminContext) -> None:
        self._app = app
        self._context = context

    def add(
        self, method: str, path: str, summary: str, *, public: bool = False
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            quart_path = re.sub(r"\{(\w+)\}", r"<\1>", path)
            self._app.add_url_rule(quart_path, f"{method} {path}", handler, methods=[method])
            self._context.routes.append(
                {"method": method.lower(), "path": path, "summary": summary, "public": public}
            )
            return handler

        return register


def create_admin_app(context: AdminContext) -> QuartTrio:
    """The quart-trio app serving ``/admin/...`` and ``/metrics`` for ``context``."""
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_ADMIN_BODY
    public = {"/admin/health", "/admin/ready", "/metrics"}
    routes = _Routes(app, context)

    @app.before_request
    async def authenticate() -> Response | None:
        if request.path in public:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.encode(), context.token.encode()
        ):
            return None
        return _json_error(401, "missing or wrong admin token (Authorization: Bearer <token>)")

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return _json_error(error.code or 500, error.description)

    @routes.add("GET", "/admin/health", "Liveness: the daemon's loop answers.", public=True)
    async def health() -> Response:
        return _json({"status": "alive", "version": __version__})

    @routes.add("GET", "/admin/ready", "Readiness: deployed and listening.", public=True)
    async def ready() -> Response:
        status = 200 if context.ready else 503
        return _json({"ready": context.ready}, status)

    @routes.add("GET", "/admin/services", "Deployed services with their counters.")
    async def services() -> Response:
        return _json({"services": [_service(context, name) for name in context.router.names()]})

    @routes.add("GET", "/admin/services/{name}", "One service: counters, mean and p99 latency.")
    async def service(name: str) -> Response:
        if name not in context.router:
            return _json_error(404, f"no service named {name!r} is deployed")
        return _json(_service(context, name))

    @routes.add("POST", "/admin/services/{name}/invoke", "Invoke a service with a JSON payload.")
    async def invoke(name: str) -> Response:
        raw = await request.get_data()
        try:
            payload = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _json_error(400, f"the body is not valid JSON: {exc}")
        try:
            timeout = float(request.args["timeout"]) if "timeout" in request.args else None
        except ValueError:
            return _json_error(400, "timeout must be a number of seconds")
        cid = new_cid()
        try:
            response = await context.router.call(name, Message(payload, cid), timeout=timeout)
        except Exception as exc:  # the error boundary: the caller gets a status, not a traceback
            status, message = (
                (404, str(exc)) if isinstance(exc, ServiceNotFound) else status_for(exc)
            )
            log.info("admin_invoke_failed", service=name, cid=cid, status=status)
            return _json_error(status, message, cid)
        return _json({"cid": cid, **_encode_payload(response.payload)})

    @routes.add("GET", "/admin/deployments", "Per service file: status, services, errors.")
    async def deployments() -> Response:
        return _json({"files": [state.to_json() for state in context.deployer.states()]})

    @routes.add("GET", "/admin/channels", "REST channels (credentials shown as set).")
    async def channels() -> Response:
        return _json({"channels": [_channel(c) for c in context.gateway.table.channels]})

    @routes.add("GET", "/admin/connections", "Outgoing connections (secrets shown as set/unset).")
    async def connections() -> Response:
        return _json({"connections": context.connections.describe()})

    @routes.add(
        "PUT",
        "/admin/connections/{kind}/{name}/secret",
        'Set a connection\'s secret, e.g. a Dropbox token: {"secret": "..."}. Never readable.',
    )
    async def set_secret(kind: str, name: str) -> Response:
        raw = await request.get_data()
        try:
            secret = json.loads(raw)["secret"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            return _json_error(400, 'expected a JSON body {"secret": "..."}')
        if not isinstance(secret, str) or not secret.strip():
            return _json_error(400, "the secret must be a non-empty string")
        try:
            await trio.to_thread.run_sync(context.connections.set_secret, kind, name, secret)
        except LookupError as exc:
            return _json_error(404, str(exc))
        return _json({"kind": kind, "name": name, "secret": "set"})

    @routes.add("POST", "/admin/reload", "Re-read the configuration file; apply channels now.")
    async def reload() -> Response:
        try:
            return _json(await context.reload())
        except ConfigError as exc:
            return _json_error(400, str(exc))

    @routes.add("GET", "/admin/scheduler/jobs", "Scheduler jobs: schedule, state, last run.")
    async def jobs() -> Response:
        return _json({"jobs": [job.to_mapping() for job in context.scheduler.list_jobs()]})

    @routes.add("POST", "/admin/scheduler/jobs", "Create a job (the same keys as in the config).")
    async def create_job() -> Response:
        return await _job_call(lambda spec: context.scheduler.add(spec), await _job_spec(), 201)

    @routes.add("GET", "/admin/scheduler/jobs/{name}", "One job.")
    async def job(name: str) -> Response:
        return await _job_call(context.scheduler.get, name)

    @routes.add("PUT", "/admin/scheduler/jobs/{name}", "Replace a job created through the API.")
    async def update_job(name: str) -> Response:
        spec = await _job_spec(name)
        return await _job_call(context.scheduler.update, spec)

    @routes.add("DELETE", "/admin/scheduler/jobs/{name}", "Delete a job created through the API.")
    async def delete_job(name: str) -> Response:
        return await _job_call(context.scheduler.delete, name, 204)

    @routes.add("POST", "/admin/scheduler/jobs/{name}/pause", "Pause a job.")
    async def pause_job(name: str) -> Response:
        return await _job_call(context.scheduler.pause, name)

    @routes.add("POST", "/admin/scheduler/jobs/{name}/resume", "Resume a paused job.")
    async def resume_job(name: str) -> Response:
        return await _job_call(context.scheduler.resume, name)

    @routes.add("POST", "/admin/scheduler/jobs/{name}/run", "Run a job now and wait for it.")
    async def run_job(name: str) -> Response:
        return await _job_call(context.scheduler.run_now, name)

    async def _job_spec(name: str | None = None) -> JobSpec | Response:
        raw = await request.get_data()
        try:
            data = json.loads(raw) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _json_error(400, f"the body is not valid JSON: {exc}")
        if name is not None:
            data = {**data, "name": name} if isinstance(data, dict) else data
        try:
            return JobSpec.from_mapping(data, where="job")
        except ConfigError as exc:
            return _json_error(400, str(exc))

    async def _job_call(action: Callable[[Any], Any], argument: Any, ok: int = 200) -> Response:
        """Run a scheduler action, mapping its errors to statuses."""
        if isinstance(argument, Response):
            return argument  # the request was already refused
        try:
            result = action(argument)
            if inspect.isawaitable(result):
                result = await result
        except JobNotFound as exc:
            return _json_error(404, str(exc))
        except JobConflict as exc:
            return _json_error(409, str(exc))
        except ConfigError as exc:
            return _json_error(400, str(exc))
        if result is None:
            return Response(b"", status=ok)
        return _json(result.to_mapping(), ok)

    @routes.add("GET", "/admin/openapi.json", "This document.")
    async def openapi() -> Response:
        return _json(_openapi(context.routes))

    @routes.add("GET", "/metrics", "Prometheus metrics.", public=True)
    async def metrics() -> Response:
        return Response(metrics_text(context.router, context.gateway), content_type=CONTENT_TYPE)

    return app


def _service(context: AdminContext, name: str) -> dict[str, Any]:
    actor = context.router.get(name)
    owner = next((s.path.name for s in context.deployer.states() if name in s.services), None)
    return {
        "name": name,
        "file": owner,
        "mode": "sync" if not actor.service.is_async() else "async",
        "concurrency": actor.service.concurrency,
        "mailbox": actor.service.mailbox,
        "queued": actor.queued,
        **actor.stats.summary(),
    }


def _channel(channel: RestChannel) -> dict[str, Any]:
    security = channel.security
    return {
        "path": channel.path,
        "service": channel.service,
        "methods": list(channel.methods),
        "max_body": channel.max_body,
        "timeout": channel.timeout,
        "security": None
        if security is None
        else {
            "type": security.type,
            "username": security.username,
            "header": security.header if security.type == "apikey" else None,
            "credentials": "set",
        },
    }


def _encode_payload(payload: Any) -> dict[str, Any]:
    if isinstance(payload, bytes):
        return {"response": base64.b64encode(payload).decode(), "encoding": "base64"}
    return {"response": payload}


def _json(document: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(document, default=str), status=status, content_type="application/json"
    )


def _json_error(status: int, message: str | None, cid: str | None = None) -> Response:
    return _json(error_document(status, message, cid), status)


def _openapi(routes: list[dict[str, Any]]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", route["path"])
        ]
        responses: dict[str, Any] = {"200": {"description": "OK"}}
        if not route["public"]:
            responses["401"] = {"description": "Missing or wrong admin token"}
        paths.setdefault(route["path"], {})[route["method"]] = {
            "summary": route["summary"],
            "parameters": parameters,
            "security": [] if route["public"] else [{"bearer": []}],
            "responses": responses,
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hotwire admin API", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
