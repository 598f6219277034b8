"""The Dropbox emulator's ASGI application: the API's wire protocol around the routes.

It reproduces what the SDK relies on: RPC arguments as a JSON body, upload and
download arguments in the ``Dropbox-API-Arg`` header, download results in the
``Dropbox-API-Result`` header; 409 ``{error_summary, error}`` for route errors,
400 plain text for malformed requests, 401 JSON for bad tokens, 429 JSON with
Retry-After; routes served only on their own host (api or content).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import trio
from dropbox import stone_serializers, stone_validators

from ._dropbox_auth import Tokens
from ._dropbox_faults import Failure, Faults, RecordedRequest
from ._dropbox_relay import Relay
from ._dropbox_routes import ApiFailure, BadRequest, Body, ClientGone, Routes
from ._dropbox_store import UnsupportedPath

log = structlog.get_logger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = "application/json"
_RPC_TYPES = (_JSON, "application/json; charset=utf-8", "text/plain; charset=dropbox-cors-hack")
_UPLOAD_TYPES = ("application/octet-stream", "text/plain; charset=dropbox-cors-hack")
_MAX_RPC_BODY = 1 << 20
_DOWNLOAD_CHUNK = 1 << 20


class Response:
    """A complete response: status, body and headers."""

    def __init__(
        self, status: int, body: bytes = b"", content_type: str = _JSON, **headers: str
    ) -> None:
        self.status = status
        self.body = body
        self.headers = {"content-type": content_type, **headers}

    @classmethod
    def json(cls, status: int, value: Any, **headers: str) -> Response:
        # ensure_ascii: header values and bodies must stay ASCII, as the real API sends them
        return cls(status, json.dumps(value).encode(), **headers)

    @classmethod
    def text(cls, status: int, message: str) -> Response:
        return cls(status, message.encode(), "text/plain; charset=utf-8")

    async def send(self, send: Send) -> None:
        headers = [(k.encode(), v.encode()) for k, v in self.headers.items()]
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def error_summary(error: Any) -> str:
    """The API's ``error_summary``: the chain of union tags, e.g. ``path/conflict/file/...``.

    A struct member of a union is flattened into the union's object; the chain
    goes on through its first field that is itself a union.
    """
    tags = []
    while isinstance(error, dict) and ".tag" in error:
        tag = error[".tag"]
        tags.append(tag)
        error = error.get(tag) or next(
            (v for v in error.values() if isinstance(v, dict) and ".tag" in v), None
        )
    return "/".join(tags) + "/..."


def failure_response(failure: Failure) -> Response:
    """The response of an injected failure: 429 as the real rate limiter answers, else text."""
    headers = {} if failure.retry_after is None else {"retry-after": str(failure.retry_after)}
    assert failure.status is not None
    if failure.status == 429:
        error = {"reason": {".tag": "too_many_requests"}, "retry_after": failure.retry_after}
        body = {"error_summary": "too_many_requests/...", "error": error}
        return Response.json(429, body, **headers)
    response = Response.text(failure.status, "Emulated failure")
    response.headers.update(headers)
    return response


class DropboxApp:
    """The ASGI application; ``requests`` records what it answered."""

    def __init__(
        self, routes: Routes, tokens: Tokens, faults: Faults, requests: deque[RecordedRequest]
    ) -> None:
        self.routes = routes
        self.tokens = tokens
        self.faults = faults
        self.requests = requests
        self.relay: Relay | None = None  # set once the public ports are open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        route = path[3:] if path.startswith("/2/") else path.lstrip("/")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        def record(status: int | None) -> None:
            # before the response goes out, so a client that got it finds it recorded
            self.requests.append(
                RecordedRequest(route, headers.get("user-agent", ""), status, _arg_path(headers))
            )

        try:
            await self._handle(scope, route, headers, Body(receive), _Recording(send, record))
        except ClientGone:
            record(None)

    async def _handle(
        self, scope: Scope, route: str, headers: dict[str, str], body: Body, send: _Recording
    ) -> None:
        """Answer one request, or drop its connection."""
        if delay := self.faults.delay_for(route):
            await trio.sleep(delay)
        failure = self.faults.take(route)
        if failure is not None:
            await body.drain()
            if failure.status is None:
                send.record(None)
                if self.relay is not None:
                    self.relay.drop(scope.get("client"))
                return
            response: Response | None = failure_response(failure)
        else:
            response = await self._respond(scope, route, headers, body, send)
        if response is not None:  # else a download, already streamed
            await body.drain()
            await response.send(send)

    async def _respond(
        self, scope: Scope, route: str, headers: dict[str, str], body: Body, send: Send
    ) -> Response | None:
        """The response to a request, or None once a download has been streamed."""
        front = self.relay.front_of(scope.get("client")) if self.relay else None
        if route == "oauth2/token":
            if front == "content":
                return Response.text(400, "oauth2/token is served by the api host")
            status, value = self.tokens.grant(
                await body.read(_MAX_RPC_BODY), headers.get("authorization")
            )
            return Response.json(status, value)
        entry = self.routes.table.get(route)
        if entry is None or scope["method"] != "POST":
            return Response.text(400, f"Unknown API function: {route!r}")
        sdk_route, handler = entry
        prefix = f'Error in call to API function "{route}": '
        host, style = sdk_route.attrs["host"], sdk_route.attrs["style"]
        if front is not None and front != host:
            return Response.text(400, f"{prefix}this function is served by the {host} host")
        try:
            self._authorize(headers)
            arg = await self._argument(sdk_route, style, headers, body)
            result = await handler(arg, body)
        except _Unauthorized as exc:
            value = {"error_summary": f"{exc.tag}/...", "error": {".tag": exc.tag}}
            return Response.json(401, value)
        except (BadRequest, UnsupportedPath) as exc:
            return Response.text(400, prefix + str(exc))
        except ApiFailure as exc:
            error = stone_serializers.json_compat_obj_encode(sdk_route.error_type, exc.error)
            return Response.json(409, {"error_summary": error_summary(error), "error": error})
        if style == "download":
            metadata, local_path = result
            await _stream_file(send, _encode(sdk_route.result_type, metadata), local_path)
            return None
        return Response.json(
            200, stone_serializers.json_compat_obj_encode(sdk_route.result_type, result)
        )

    def _authorize(self, headers: dict[str, str]) -> None:
        authorization = headers.get("authorization")
        if authorization is None:
            raise BadRequest(
                'Must provide HTTP header "Authorization" or URL parameter "authorization".'
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise BadRequest(
                'Invalid authorization value in HTTP header "Authorization". '
                'Expecting "Bearer <oauth2-access-token>".'
            )
        if (tag := self.tokens.check(token)) is not None:
            raise _Unauthorized(tag)

    async def _argument(self, route: Any, style: str, headers: dict[str, str], body: Body) -> Any:
        """Decode the route's argument with the SDK's validator, strictly."""
        content_type = headers.get("content-type", "")
        if style == "rpc":
            if content_type not in _RPC_TYPES:
                raise BadRequest(
                    f'Bad HTTP "Content-Type" header: {content_type!r}. Expecting "{_JSON}".'
                )
            where = "request body"
            raw: str | None = (await body.read(_MAX_RPC_BODY)).decode("utf-8", "replace")
        else:
            if style == "upload" and content_type not in _UPLOAD_TYPES:
                raise BadRequest(
                    f'Bad HTTP "Content-Type" header: {content_type!r}. '
                    'Expecting "application/octet-stream".'
                )
            where, raw = 'HTTP header "Dropbox-API-Arg"', headers.get("dropbox-api-arg")
        if raw is None:
            raise BadRequest('Must provide HTTP header "Dropbox-API-Arg" or URL parameter "arg".')
        try:
            return stone_serializers.json_compat_obj_decode(
                route.arg_type, json.loads(raw), strict=True
            )
        except ValueError as exc:
            raise BadRequest(f"{where}: could not decode input as JSON") from exc
        except stone_validators.ValidationError as exc:
            raise BadRequest(f"{where}: {exc}") from exc


def _arg_path(headers: dict[str, str]) -> str | None:
    """The path named by a content route's Dropbox-API-Arg, if any (for the request record)."""
    try:
        arg = json.loads(headers.get("dropbox-api-arg") or "null")
    except ValueError:
        return None
    if not isinstance(arg, dict):
        return None
    commit = arg.get("commit")
    path = commit.get("path") if isinstance(commit, dict) else arg.get("path")
    return path if isinstance(path, str) else None


class _Recording:
    """An ASGI send that records the status of the response as it starts."""

    def __init__(self, send: Send, record: Callable[[int | None], None]) -> None:
        self._send = send
        self.record = record

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.record(message["status"])
        await self._send(message)


class _Unauthorized(Exception):
    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


def _encode(data_type: Any, value: Any) -> str:
    return json.dumps(stone_serializers.json_compat_obj_encode(data_type, value))


async def _stream_file(send: Send, api_result: str, path: Path) -> None:
    """Send a download: the metadata in Dropbox-API-Result, the file as the body, in chunks."""
    async with await trio.open_file(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size  # of the open file, which a rename cannot change
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"dropbox-api-result", api_result.encode()),
            (b"content-length", str(size).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while chunk := await file.read(_DOWNLOAD_CHUNK):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
