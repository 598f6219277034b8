"""What the admin API's route modules share: the context, route registration, JSON answers.

Routes are declared once with `Routes.add`, which registers them with Quart
and describes them in the OpenAPI document, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quart import Quart, Response, request

from .._deployer import Deployer
from .._router import Router
from ..scheduler import Scheduler
from ._channels import ChannelGateway
from ._errors import error_document
from ._machine import Machine

if TYPE_CHECKING:
    from .._durable import DurableOutbox
    from .._reload import Reloader

__all__ = ["AdminContext", "Routes", "json_error", "json_response", "read_json", "request_body"]


@dataclass
class AdminContext:
    """What the admin API reads and drives in the running daemon."""

    router: Router
    deployer: Deployer
    gateway: ChannelGateway
    token: str
    #: Re-reads the configuration file and applies what can change live; owns
    #: the current configuration and connections.
    reloader: Reloader
    #: None in workers other than worker 0, which alone runs jobs.
    scheduler: Scheduler | None
    outbox: DurableOutbox
    #: This worker and its peers, for answers about the whole machine.
    machine: Machine
    ready: bool = False
    routes: list[dict[str, Any]] = field(default_factory=list)


Handler = Callable[..., Awaitable[Any]]


class Routes:
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


def json_response(document: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(document, default=str), status=status, content_type="application/json"
    )


def json_error(status: int, message: str | None, cid: str | None = None) -> Response:
    return json_response(error_document(status, message, cid), status)


async def request_body() -> bytes:
    """The request's body as bytes (Quart types it so only with every argument given)."""
    return await request.get_data(cache=True, as_text=False, parse_form_data=False)


async def read_json() -> tuple[Any, Response | None]:
    """The request's JSON body (None when empty), or an error answer for a bad one."""
    raw = await request.get_data()
    try:
        return (json.loads(raw) if raw else None), None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, json_error(400, f"the body is not valid JSON: {exc}")
