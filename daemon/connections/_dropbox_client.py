"""Build a real ``dropbox.Dropbox`` client bound to one endpoint and one CA.

The SDK (12.2.5) has two traps for a client pointed anywhere but dropbox.com:

(a) token refresh posts to ``dropbox.session.API_HOST``, a module constant read
    from the environment at import time, whatever the client's host map says;
(b) requests merges ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` into every call
    whose ``verify`` is unset, which the SDK's calls are, so the environment's
    bundle silently replaces ``ca_certs`` (and the pinned session's verify).

Both are defeated per client, never process-wide: two clients pointed at two
endpoints with two CAs work side by side in one process.

The session does not consult the environment on each request
(``trust_env = False``): requests would otherwise read ``~/.netrc`` and scan
the proxy variables for every call, a good part of a small upload's cost, and
a netrc entry for the host would replace the bearer token. What the
environment says is read once, when the client is built: ``HTTPS_PROXY`` (and
``ALL_PROXY``, minus hosts in ``NO_PROXY``) for each of the client's hosts, and
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` when no ``ca_certs`` is given. A
change to those variables reaches clients built after it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import dropbox
import requests
from dropbox.session import HOST_API, HOST_CONTENT, HOST_NOTIFY
from requests.adapters import HTTPAdapter
from urllib3 import BaseHTTPResponse
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

_POOL_SIZE = 8


class _RoutedDropbox(dropbox.Dropbox):  # type: ignore[misc]  # the SDK is untyped
    """A Dropbox client whose token refresh and clones keep its own host map."""

    def refresh_access_token(self, host: str | None = None, scope: list[str] | None = None) -> None:
        # Trap (a): the SDK's default ``host`` is the import-time API_HOST constant.
        super().refresh_access_token(host=host or self._host_map[HOST_API], scope=scope)

    def clone(self, *args: Any, **kwargs: Any) -> Any:
        # clone() (and with_path_root()) build a new client whose __init__ resets
        # _host_map to the import-time constants; carry ours over.
        other = super().clone(*args, **kwargs)
        other._host_map = dict(self._host_map)
        return other


class _RetryDropped(Retry):
    """urllib3's retry policy for connections dropped before the response.

    The SDK retries 5xx and 429 answers but not a connection the server (or a
    proxy, or a load balancer) closed without answering; urllib3 does, given
    this policy. Timeouts are not retried: the request may still be running.
    """

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


def dropbox_session(
    *, ca_certs: str | Path | None = None, max_retries_on_error: int = 4
) -> requests.Session:
    """Return a connection pool for Dropbox clients that verifies TLS with ``ca_certs``.

    ``ca_certs`` (a PEM bundle) is used whatever ``REQUESTS_CA_BUNDLE`` says;
    without it, ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` as set now, else
    requests' own bundle. Connections dropped without a response are retried
    up to ``max_retries_on_error`` times. Proxies are set per host by
    ``build_dropbox_client``.
    """
    session = requests.Session()
    # Trap (b), and no per-request environment look-ups: see the module docstring.
    session.trust_env = False
    session.verify = (
        str(ca_certs)
        if ca_certs is not None
        else os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    retry = _RetryDropped(
        total=max_retries_on_error,
        connect=max_retries_on_error,
        read=max_retries_on_error,
        status=0,  # 5xx and 429 are the SDK's to retry, with its own limits
        other=0,
        redirect=0,
        allowed_methods=None,  # every Dropbox call is a POST
        respect_retry_after_header=False,
        raise_on_status=False,
        backoff_factor=0.25,
    )
    session.mount("https://", HTTPAdapter(pool_maxsize=_POOL_SIZE, max_retries=retry))
    return session


def build_dropbox_client(
    *,
    user_agent: str,
    token: str | None = None,
    refresh_token: str | None = None,
    app_key: str | None = None,
    app_secret: str | None = None,
    timeout: float = 100.0,
    max_retries_on_error: int = 4,
    max_retries_on_rate_limit: int | None = 4,
    api_host: str | None = None,
    content_host: str | None = None,
    ca_certs: str | Path | None = None,
    session: requests.Session | None = None,
) -> Any:
    """Return a ready ``dropbox.Dropbox`` whose every request goes to the configured hosts.

    Arguments:
        user_agent: sent as the User-Agent (the SDK appends its own name and version).
        token: an access token; or ``refresh_token`` with ``app_key`` (and
            ``app_secret`` unless the app uses PKCE) to get and renew one.
        timeout: seconds to wait for any single packet from the server.
        max_retries_on_error: retries of 5xx answers (by the SDK) and of
            connections dropped without an answer (by urllib3).
        max_retries_on_rate_limit: retries of 429 answers; None retries forever.
        api_host, content_host: ``host[:port]`` replacing api.dropboxapi.com
            (RPC routes, token refresh, and longpoll) and content.dropboxapi.com
            (uploads, downloads). Either defaults to Dropbox's own host.
        ca_certs: a PEM bundle to verify the server with, instead of the defaults.
        session: a session made by ``dropbox_session`` to share its pool;
            by default each client gets its own. Give the CA to that session.

    Raises:
        ValueError: both ``session`` and ``ca_certs`` were given, or no credentials.
    """
    if session is not None and ca_certs is not None:
        raise ValueError("give ca_certs to dropbox_session() when passing a session, not both")
    if not token and not (refresh_token and app_key):
        raise ValueError("a Dropbox client needs token, or refresh_token with app_key")
    own_session = session is None
    if session is None:
        session = dropbox_session(ca_certs=ca_certs, max_retries_on_error=max_retries_on_error)
    client = _RoutedDropbox(
        oauth2_access_token=token,
        oauth2_refresh_token=refresh_token,
        app_key=app_key,
        app_secret=app_secret,
        user_agent=user_agent,
        timeout=timeout,
        max_retries_on_error=max_retries_on_error,
        max_retries_on_rate_limit=max_retries_on_rate_limit,
        session=session,
    )
    if own_session:
        # The SDK sends no User-Agent with token refreshes; the session's default fills in.
        session.headers["User-Agent"] = client._user_agent
    # The SDK's host map is filled from import-time constants; this is the only
    # per-client place to change it. Longpoll follows the API host.
    if api_host is not None:
        client._host_map[HOST_API] = api_host
        client._host_map[HOST_NOTIFY] = api_host
    if content_host is not None:
        client._host_map[HOST_CONTENT] = content_host
    _set_proxies(session, client._host_map.values())
    return client


def _set_proxies(session: requests.Session, hosts: Iterable[str]) -> None:
    """Route each of ``hosts`` through the proxy the environment names for it now, if any."""
    for host in hosts:
        url = f"https://{host}"
        proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
        hostname = urlsplit(url).hostname
        if proxy and hostname:
            session.proxies[f"https://{hostname}"] = proxy  # requests' per-host proxy key
