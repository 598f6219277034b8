"""HTTP: REST channels, the admin API and metrics, on hypercorn's trio worker."""

from __future__ import annotations

from ._admin import AdminContext, create_admin_app
from ._body import RequestBody
from ._channels import ChannelGateway
from ._machine import Machine
from ._request import Headers, HttpRequest
from ._routes import RouteTable
from ._server import HotwireApp, reuse_port_socket, serve_http
from ._token import admin_token, token_path

__all__ = [
    "AdminContext",
    "ChannelGateway",
    "Headers",
    "HotwireApp",
    "HttpRequest",
    "Machine",
    "RequestBody",
    "RouteTable",
    "admin_token",
    "create_admin_app",
    "reuse_port_socket",
    "serve_http",
    "token_path",
]
