"""The admin JSON API under ``/admin``, and ``/metrics``: a quart-trio app.

Every route but health, readiness and metrics needs ``Authorization: Bearer
<token>``. This module has the app and the routes for services, deployments,
channels and connections; the scheduler's and the outbox's are in
`_admin_jobs` and `_admin_outbox`. Secrets are shown as set or unset, never
their value.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections import Counter
from typing import Any

import structlog
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .._actor import Message, ServiceStats
from .._config import RestChannel
from .._router import new_cid
from .._version import __version__
from ..exceptions import ConfigError, ServiceNotFound
from ._admin_base import (
    AdminContext,
    Routes,
    json_error,
    json_response,
    read_json,
    request_body,
)
from ._admin_jobs import add_job_routes
from ._admin_outbox import add_outbox_routes
from ._channels import status_for
from ._machine import FORWARDED_HEADER, merge_outbox_stats, merge_stats
from ._metrics import CONTENT_TYPE, OutboxFigures, metrics_text

__all__ = ["AdminContext", "create_admin_app"]

log = structlog.get_logger(__name__)

#: Admin request bodies (invoke payloads) are small JSON documents.
MAX_ADMIN_BODY = 1024 * 1024


def create_admin_app(context: AdminContext) -> QuartTrio:
    """The quart-trio app serving ``/admin/...`` and ``/metrics`` for ``context``."""
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_ADMIN_BODY
    public = {"/admin/health", "/admin/ready", "/metrics"}
    routes = Routes(app, context)

    @app.before_request
    async def authenticate() -> Response | None:
        if request.path in public:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.encode(), context.token.encode()
        ):
            return None
        return json_error(401, "missing or wrong admin token (Authorization: Bearer <token>)")

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return json_error(error.code or 500, error.description)

    @routes.add("GET", "/admin/health", "Liveness: the daemon's loop answers.", public=True)
    async def health() -> Response:
        return json_response({"status": "alive", "version": __version__})

    @routes.add("GET", "/admin/ready", "Readiness: deployed and listening.", public=True)
    async def ready() -> Response:
        status = 200 if context.ready else 503
        return json_response({"ready": context.ready}, status)

    @routes.add("GET", "/admin/services", "Deployed services, counters of all workers.")
    async def services() -> Response:
        figures, missing = await context.machine.figures()
        stats = merge_stats(figures)
        listed = [_service(context, name, stats) for name in context.router.names()]
        return json_response({"services": listed, "workers": len(figures), "missing": missing})

    @routes.add("GET", "/admin/services/{name}", "One service: counters, mean and p99 latency.")
    async def service(name: str) -> Response:
        if name not in context.router:
            return json_error(404, f"no service named {name!r} is deployed")
        figures, missing = await context.machine.figures()
        return json_response({**_service(context, name, merge_stats(figures)), "missing": missing})

    @routes.add("GET", "/admin/internal/figures", "This worker's own counters (for its peers).")
    async def own_figures() -> Response:
        return json_response(context.machine.local().to_json())

    @routes.add("POST", "/admin/services/{name}/invoke", "Invoke a service with a JSON payload.")
    async def invoke(name: str) -> Response:
        payload, refused = await read_json()
        if refused is not None:
            return refused
        try:
            timeout = float(request.args["timeout"]) if "timeout" in request.args else None
        except ValueError:
            return json_error(400, "timeout must be a number of seconds")
        cid = new_cid()
        try:
            response = await context.router.call(name, Message(payload, cid), timeout=timeout)
        except Exception as exc:  # the error boundary: the caller gets a status, not a traceback
            status, message = (
                (404, str(exc)) if isinstance(exc, ServiceNotFound) else status_for(exc)
            )
            log.info("admin_invoke_failed", service=name, cid=cid, status=status)
            return json_error(status, message, cid)
        return json_response({"cid": cid, **_encode_payload(response.payload)})

    @routes.add("GET", "/admin/deployments", "Per service file: status, services, errors.")
    async def deployments() -> Response:
        figures, missing = await context.machine.figures()
        return json_response(
            {
                "files": figures[0].deployments,
                # With several workers a change is deployed once every worker has it.
                "workers": [{"worker": f.worker, "files": f.deployments} for f in figures],
                "missing": missing,
            }
        )

    @routes.add("GET", "/admin/channels", "REST channels (credentials shown as set).")
    async def channels() -> Response:
        return json_response({"channels": [_channel(c) for c in context.gateway.table.channels]})

    @routes.add("GET", "/admin/connections", "Outgoing connections (secrets shown as set/unset).")
    async def connections() -> Response:
        return json_response({"connections": context.reloader.connections.describe()})

    @routes.add(
        "PUT",
        "/admin/connections/{kind}/{name}/secret",
        'Set a connection\'s secret, e.g. a Dropbox token: {"secret": "..."}. Never readable.',
    )
    async def set_secret(kind: str, name: str) -> Response:
        body, _ = await read_json()
        secret = body.get("secret") if isinstance(body, dict) else None
        if not isinstance(secret, str) or not secret.strip():
            return json_error(400, "the secret must be a non-empty string")
        try:
            await trio.to_thread.run_sync(
                context.reloader.connections.set_secret, kind, name, secret
            )
        except LookupError as exc:
            return json_error(404, str(exc))
        missing = await _pass_on(context)
        return json_response({"kind": kind, "name": name, "secret": "set", "missing": missing})

    @routes.add("POST", "/admin/reload", "Re-read the configuration file; apply channels now.")
    async def reload() -> Response:
        try:
            result = await context.reloader.reload()
        except ConfigError as exc:
            return json_error(400, str(exc))
        return json_response({**result, "missing": await _pass_on(context)})

    add_job_routes(routes, context)
    add_outbox_routes(routes, context)

    @routes.add("GET", "/admin/openapi.json", "This document.")
    async def openapi() -> Response:
        return json_response(_openapi(context.routes))

    @routes.add("GET", "/metrics", "Prometheus metrics.", public=True)
    async def metrics() -> Response:
        workers, _ = await context.machine.figures()
        requests: Counter[tuple[str, int]] = Counter()
        for worker in workers:
            requests.update(worker.requests)
        # Counts by state come from the store all workers share: already the machine's.
        counts = await context.outbox.outbox.counts()
        outbox = OutboxFigures(counts, merge_outbox_stats(workers))
        text = metrics_text(merge_stats(workers), requests, outbox)
        return Response(text, content_type=CONTENT_TYPE)

    return app


async def _pass_on(context: AdminContext) -> list[int]:
    """Apply this request on the other workers too, unless it came from one of them."""
    if FORWARDED_HEADER in request.headers:
        return []
    return await context.machine.broadcast(request.method, request.path, await request_body())


def _service(context: AdminContext, name: str, stats: dict[str, ServiceStats]) -> dict[str, Any]:
    actor = context.router.get(name)
    owner = context.deployer.file_of(name)
    return {
        "name": name,
        "file": owner.name if owner else None,
        "mode": "sync" if not actor.service.is_async() else "async",
        "concurrency": actor.service.concurrency,
        "mailbox": actor.service.mailbox,
        "queued": actor.queued,
        # queued: this worker's mailbox; the counters: every worker's.
        **stats.get(name, actor.stats).summary(),
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
