"""REST channels: HTTP requests in, service invocations out, as a raw ASGI app.

Channels bypass Quart on purpose: they need the request body with real back
pressure (see `_body`) and they are the hot path, where a framework's
per-request machinery costs throughput. Every answer that is not the
service's own is the JSON error of `_errors`; every answer carries the
request's cid in ``X-Hotwire-CID`` so a caller can quote it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_to_bytes

import structlog

if TYPE_CHECKING:
    from .._durable import DurableOutbox

from .._actor import Message
from .._config import ChannelSecurity, RestChannel
from .._router import Router, new_cid
from .._service import Response
from ..connections import describe_dropbox_error
from ..exceptions import (
    ConnectionFailed,
    InvalidInput,
    InvokeTimeout,
    OutboxUnavailable,
    RemoteFileError,
    ServiceNotFound,
    ServiceUnavailable,
)
from ..outbox import unavailable
from ._body import BodyTooLarge, ClientDisconnected, RequestBody, receive_body
from ._errors import error_json
from ._request import Headers, HttpRequest
from ._routes import RouteTable

__all__ = ["ChannelGateway", "status_for"]

log = structlog.get_logger(__name__)

#: Form bodies up to this size are parsed into SimpleIO input; larger ones are raw data.
FORM_LIMIT = 64 * 1024
#: JSON bodies up to this size are parsed; a larger JSON body is refused with 413.
JSON_LIMIT = 16 * 1024 * 1024

#: Encodes response payloads; made once, as ``json.dumps(default=...)`` builds an encoder per call.
_encode_json = json.JSONEncoder(default=str).encode

Scope = dict[str, Any]


class HttpError(Exception):
    """Ends a channel request with a JSON error; the message is safe to show."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status = status
        self.headers = headers


class ChannelGateway:
    """Serves the REST channels of `table` by invoking their services through `router`.

    ``requests`` counts answers by (channel path, status) for /metrics; a path
    no channel serves counts under ``"<unmatched>"``.
    """

    def __init__(
        self, router: Router, table: RouteTable, *, spool_dir: Path, spool_threshold: int
    ) -> None:
        self.router = router
        self.table = table
        self.requests: Counter[tuple[str, int]] = Counter()
        self._spool_dir = spool_dir
        self._spool_threshold = spool_threshold
        #: Set by the daemon once the outbox runs; durable channels need it.
        self.outbox: DurableOutbox | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        cid = new_cid()
        channel_path = "<unmatched>"
        body: RequestBody | None = None
        try:
            path, channel, path_params = self._route(scope)
            channel_path = channel.path
            request = await self._receive(scope, receive, path, channel, path_params)
            body = request.body
            if channel.delivery == "durable":
                response = await self._accept_durably(channel, request, cid)
            else:
                response = await self.router.call(
                    channel.service,
                    Message(_parse_payload(request), cid, request),
                    timeout=channel.timeout,
                )
            status = await _send_response(send, response, cid, head=scope["method"] == "HEAD")
        except HttpError as exc:
            status = exc.status
            await _send_error(send, exc.status, str(exc), cid, exc.headers)
        except ClientDisconnected:
            log.info("http_client_disconnected", cid=cid, path=scope["path"])
            status = 499  # nginx's code for "client closed the request"; never sent
        except Exception as exc:  # the error boundary: map to a status, never a traceback
            status, message = status_for(exc)
            if status >= 500:
                log.error("channel_request_failed", cid=cid, path=scope["path"], exc_info=exc)
            await _send_error(send, status, message, cid)
        finally:
            if body is not None:
                body.close()
        self.requests[channel_path, status] += 1

    def _route(self, scope: Scope) -> tuple[str, RestChannel, Mapping[str, str]]:
        """The decoded path, its channel and path parameters; HttpError 400/404/405."""
        path = _decode_path(scope)
        match = self.table.match(scope["method"], path)
        if match is None:
            raise HttpError(404, f"no channel serves {path}")
        if match.channel is None:
            allow = ", ".join(match.allowed).encode()
            raise HttpError(405, f"{scope['method']} is not allowed here", ((b"allow", allow),))
        return path, match.channel, match.params

    async def _accept_durably(
        self, channel: RestChannel, request: HttpRequest, cid: str
    ) -> Response:
        """202 with the message id once the request is recorded and its body on disk."""
        assert self.outbox is not None
        credentials = {"authorization", "proxy-authorization", "cookie"}
        if channel.security is not None and channel.security.type == "apikey":
            credentials.add(channel.security.header.lower())
        message_id = await self.outbox.accept_http(
            channel.service,
            request.snapshot(drop_headers=frozenset(credentials)),
            _parse_payload(request),
            request.body,
            cid,
        )
        return Response({"message_id": message_id, "cid": cid}, status_code=202)

    async def _receive(
        self,
        scope: Scope,
        receive: Any,
        path: str,
        channel: RestChannel,
        path_params: Mapping[str, str],
    ) -> HttpRequest:
        """Authenticate, decode the query, receive the body; HttpError 400/401/413."""
        headers = Headers(scope["headers"])
        if channel.security is not None:
            _authenticate(channel.security, headers)
        query = _decode_query(scope["query_string"])
        if channel.delivery == "durable":
            if self.outbox is None:
                raise HttpError(503, "durable delivery is not available in this process")
            # Straight into the outbox's spool, so accepting is a rename, not a copy.
            spool_dir, threshold = self.outbox.spool.incoming, 0
        else:
            spool_dir, threshold = self._spool_dir, self._spool_threshold
        try:
            body = await receive_body(
                receive,
                limit=channel.max_body,
                declared_length=_content_length(headers),
                spool_threshold=threshold,
                spool_dir=spool_dir,
            )
        except BodyTooLarge as exc:
            raise HttpError(413, str(exc)) from exc
        except OSError as exc:
            raise unavailable(exc, spool_dir) from exc
        return HttpRequest(
            method=scope["method"],
            path=path,
            headers=headers,
            body=body,
            path_params=path_params,
            query=query,
        )


def _decode_path(scope: Scope) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    try:
        return (unquote_to_bytes(raw) if b"%" in raw else raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(400, "the request path is not valid UTF-8") from exc


def _decode_query(query_string: bytes) -> dict[str, str]:
    if not query_string:
        return {}
    try:
        return dict(
            parse_qsl(query_string.decode("ascii"), keep_blank_values=True, errors="strict")
        )
    except UnicodeError as exc:
        raise HttpError(400, "the query string is not valid UTF-8") from exc


def _content_length(headers: Headers) -> int | None:
    value = headers.value(b"content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise HttpError(400, "Content-Length must be a number of bytes")
    return int(value)


def _authenticate(security: ChannelSecurity, headers: Headers) -> None:
    if security.type == "basic":
        assert security.username is not None and security.password is not None
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        # Both comparisons always run, so timing does not tell which part was wrong.
        user_ok = hmac.compare_digest(user.encode(), security.username.encode())
        password_ok = hmac.compare_digest(password.encode(), security.password.reveal().encode())
        ok = scheme.lower() == "basic" and user_ok and password_ok
        challenge: tuple[tuple[bytes, bytes], ...] = (
            (b"www-authenticate", b'Basic realm="hotwire", charset="UTF-8"'),
        )
    else:
        assert security.key is not None
        given = headers.get(security.header, "")
        ok = hmac.compare_digest(given.encode(), security.key.reveal().encode())
        challenge = ()
    if not ok:
        raise HttpError(401, "missing or wrong credentials", challenge)


def _parse_payload(request: HttpRequest) -> Any:
    """The parsed JSON or form body, else None (the raw body stays in ``request.body``)."""
    content_type = (request.headers.value(b"content-type") or "").partition(";")[0].strip().lower()
    body = request.body
    if content_type == "application/json" or content_type.endswith("+json"):
        if body.size == 0:
            return None
        if body.size > JSON_LIMIT:
            raise HttpError(413, f"a JSON body may be at most {JSON_LIMIT} bytes")
        try:
            return json.loads(body.read())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"the body is not valid JSON: {exc}") from exc
    if content_type == "application/x-www-form-urlencoded" and 0 < body.size <= FORM_LIMIT:
        # curl --data-binary sends any file with this type: a body that is not a
        # well-formed form is raw data, not an error.
        try:
            return dict(parse_qsl(body.read().decode("utf-8"), strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            return None
    return None


def status_for(exc: Exception) -> tuple[int, str]:
    """The HTTP status and the safe message for an exception a service invocation raised."""
    if isinstance(exc, InvalidInput):
        return 400, str(exc)
    if isinstance(exc, InvokeTimeout):
        return 504, str(exc)
    if isinstance(exc, ServiceNotFound | ServiceUnavailable):
        return 503, str(exc)
    if isinstance(exc, OutboxUnavailable):
        # 507 Insufficient Storage when the disk is full; 503 for the rest.
        status = 507 if exc.reason == "disk full" else 503
        return status, f"cannot keep the request durably: {exc.reason}"
    # A peer refused or failed (Dropbox, FTP): the gateway's upstream, so 502.
    if isinstance(exc, ConnectionFailed | RemoteFileError):
        return 502, str(exc)
    if (remote := describe_dropbox_error(exc)) is not None:
        return 502, remote
    return 500, "the service failed; see the daemon's log for this cid"


async def _send_response(send: Any, response: Response, cid: str, *, head: bool) -> int:
    payload = response.payload
    if isinstance(payload, bytes):
        body, default_type = payload, "application/octet-stream"
    elif isinstance(payload, str):
        body, default_type = payload.encode(), "text/plain; charset=utf-8"
    elif payload is None:
        body, default_type = b"", None
    else:
        body, default_type = _encode_json(payload).encode(), "application/json"
    headers = [(b"x-hotwire-cid", cid.encode()), (b"content-length", str(len(body)).encode())]
    content_type = response.content_type or default_type
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    headers += [(k.lower().encode(), str(v).encode()) for k, v in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
    return response.status_code


async def _send_error(
    send: Any, status: int, message: str, cid: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = error_json(status, message, cid)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-hotwire-cid", cid.encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
