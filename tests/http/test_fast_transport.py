"""Tests of the fast Trio transport for hypercorn, side by side with the stock one.

Each behaviour test runs against both transports (``serve_fn`` is parametrized),
so a difference between them shows up as one failing half. Everything is real:
hypercorn on 127.0.0.1 port 0, clients on raw Trio sockets or httpx.
"""

from __future__ import annotations

import hashlib
import logging
import random
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog.testing
import trio
import trio.testing
from hypercorn.config import Config

from daemon._tls import ensure_local_certificate
from daemon.http import _fast_transport
from daemon.http._fast_transport import select_serve, serve, stock_serve, supported_hypercorn

Serve = Callable[..., Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

LARGE = 32 * 1024 * 1024


def payload(size: int) -> bytes:
    """Deterministic bytes with no short period, so a misplaced chunk is caught."""
    return random.Random(size).randbytes(size)


@dataclass
class App:
    """A raw ASGI app whose routes each exercise one transport behaviour."""

    slow_started: trio.Event = field(default_factory=trio.Event)
    slow_release: trio.Event = field(default_factory=trio.Event)
    stream_done: trio.Event = field(default_factory=trio.Event)
    stream_outcome: str = ""

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        if path == "/post":
            digest, length = hashlib.sha256(), 0
            while True:
                message = await receive()
                digest.update(message.get("body", b""))
                length += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            await self._respond(send, f"{length} {digest.hexdigest()}".encode())
        elif path.startswith("/size/"):
            await self._respond(send, payload(int(path.removeprefix("/size/"))), chunked=True)
        elif path == "/slow":
            self.slow_started.set()
            await self.slow_release.wait()
            await self._respond(send, b"drained")
        elif path == "/endless":
            await self._endless(send)
        else:
            await self._respond(send, path.encode())

    async def _respond(self, send: Send, body: bytes, *, chunked: bool = False) -> None:
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # Uneven chunks, some far larger than a socket buffer, force partial writes.
        sizes = [1, 1000, 65536, 1 << 20, (3 << 20) + 7] if chunked else [len(body)]
        offset = 0
        for index in range(len(body)):
            if offset == len(body):
                break
            chunk = body[offset : offset + sizes[index % len(sizes)]]
            offset += len(chunk)
            await send(
                {"type": "http.response.body", "body": chunk, "more_body": offset < len(body)}
            )
        if not body:
            await send({"type": "http.response.body", "body": b""})

    async def _endless(self, send: Send) -> None:
        """Stream 64 MiB; the client hangs up long before the end."""
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(256):
                await send(
                    {"type": "http.response.body", "body": bytes(256 * 1024), "more_body": True}
                )
            await send({"type": "http.response.body", "body": b""})
            self.stream_outcome = "ended"
        except OSError as error:
            self.stream_outcome = f"raised {error!r}"
        finally:
            self.stream_done.set()


@dataclass
class Server:
    """A running server: where it listens and how to stop it."""

    port: int
    url: str
    shutdown: trio.Event


@asynccontextmanager
async def serving(serve_fn: Serve, app: App, **settings: Any) -> AsyncIterator[Server]:
    """Serve ``app`` on 127.0.0.1 port 0 until the block ends, then shut down gracefully."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    for name, value in settings.items():
        setattr(config, name, value)
    shutdown = trio.Event()
    # A transport bug tends to hang a client rather than fail it: bound each test.
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(serve_fn, app, config, shutdown_trigger=shutdown.wait)
            )
            url: str = binds[0]
            yield Server(int(url.rsplit(":", 1)[1]), url, shutdown)
            shutdown.set()


class RawClient:
    """An HTTP/1.1 client on a raw socket: write any bytes, parse responses in order."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    async def response(self) -> tuple[int, bytes]:
        """Read one Content-Length response; return its status and body."""
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        end = self.buffer.index(b"\r\n\r\n")
        lines = bytes(self.buffer[:end]).decode("latin1").split("\r\n")
        del self.buffer[: end + 4]
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            await self._fill()
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return int(lines[0].split()[1]), body

    async def wait_closed(self) -> None:
        """Return when the server closes the connection (EOF or reset)."""
        try:
            while await self.stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


@pytest.fixture(params=["fast", "stock"])
def serve_fn(request: pytest.FixtureRequest) -> Serve:
    return select_serve(request.param == "fast")


@pytest.fixture
def no_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if hypercorn logged an error (it logs app and transport crashes)."""
    yield
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not errors, [record.getMessage() for record in errors]


class TestKeepAlive:
    """The idle timeout still closes keep-alive connections."""

    @pytest.mark.parametrize("requests", [0, 2])
    async def test_idle_connection_closed_after_keep_alive_timeout(
        self, serve_fn: Serve, requests: int
    ) -> None:
        """A connection idle for keep_alive_timeout is closed, whether or not it was used."""
        async with (
            serving(serve_fn, App(), keep_alive_timeout=0.3) as server,
            await trio.open_tcp_stream("127.0.0.1", server.port) as stream,
        ):
            client = RawClient(stream)
            for _ in range(requests):
                await stream.send_all(get("/ping"))
                assert await client.response() == (200, b"/ping")
            idle_since = trio.current_time()
            with trio.fail_after(5):
                await client.wait_closed()
            assert trio.current_time() - idle_since >= 0.25

    async def test_busy_connection_is_not_timed_out(self, serve_fn: Serve) -> None:
        """A response that takes longer than keep_alive_timeout still arrives."""
        app = App()
        async with (
            serving(serve_fn, app, keep_alive_timeout=0.2) as server,
            await trio.open_tcp_stream("127.0.0.1", server.port) as stream,
        ):
            await stream.send_all(get("/slow"))
            await app.slow_started.wait()
            await trio.sleep(0.4)  # the wait under test: longer than the timeout
            app.slow_release.set()
            assert await RawClient(stream).response() == (200, b"drained")


class TestReadTimeout:
    """hypercorn's ``read_timeout`` still cuts off a client that stops sending."""

    async def test_stalled_request_closed_after_read_timeout(self, serve_fn: Serve) -> None:
        """Headers sent, the body promised but never sent: closed after read_timeout."""
        async with (
            serving(serve_fn, App(), read_timeout=0.3, keep_alive_timeout=30) as server,
            await trio.open_tcp_stream("127.0.0.1", server.port) as stream,
        ):
            await stream.send_all(
                b"POST /post HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n12345"
            )
            stalled_since = trio.current_time()
            with trio.fail_after(5):
                await RawClient(stream).wait_closed()
            assert trio.current_time() - stalled_since >= 0.25


class TestShutdown:
    """Graceful shutdown: stop accepting, drain what is in flight."""

    async def test_in_flight_request_completes_and_new_connections_are_refused(
        self, serve_fn: Serve
    ) -> None:
        """A request running when shutdown starts gets its 200; the listener is gone."""
        app = App()
        async with (
            serving(serve_fn, app, graceful_timeout=5) as server,
            await trio.open_tcp_stream("127.0.0.1", server.port) as stream,
        ):
            await stream.send_all(get("/slow"))
            await app.slow_started.wait()
            server.shutdown.set()
            # Everything settles: listeners closed, the slow request still waiting.
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", server.port)
            app.slow_release.set()
            client = RawClient(stream)
            assert await client.response() == (200, b"drained")
            with trio.fail_after(5):
                await client.wait_closed()


class TestWrites:
    """Responses arrive whole and in order, however the socket takes them."""

    async def test_large_response_to_slow_reader_is_byte_exact(
        self, serve_fn: Serve, no_errors: None
    ) -> None:
        """32 MiB through a 4 KiB receive buffer, read in small pieces."""
        async with serving(serve_fn, App()) as server:
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", server.port))
            async with trio.SocketStream(sock) as stream:
                await stream.send_all(get(f"/size/{LARGE}"))
                received, head = bytearray(), b""
                while len(received) < LARGE or not head:
                    received += await stream.receive_some(8192)
                    if not head and b"\r\n\r\n" in received:
                        head, _, rest = bytes(received).partition(b"\r\n\r\n")
                        received = bytearray(rest)
                assert head.startswith(b"HTTP/1.1 200")
                assert hashlib.sha256(received).digest() == hashlib.sha256(payload(LARGE)).digest()

    async def test_pipelined_requests_answered_in_order(
        self, serve_fn: Serve, no_errors: None
    ) -> None:
        """Several requests in one send get their responses in request order."""
        paths = [f"/pipelined/{index}" for index in range(8)]
        async with (
            serving(serve_fn, App()) as server,
            await trio.open_tcp_stream("127.0.0.1", server.port) as stream,
        ):
            await stream.send_all(b"".join(get(path) for path in paths))
            client = RawClient(stream)
            assert [await client.response() for _ in paths] == [
                (200, path.encode()) for path in paths
            ]

    async def test_client_disconnect_mid_response(self, serve_fn: Serve, no_errors: None) -> None:
        """A client hanging up mid-body ends the app cleanly and the server keeps serving."""
        app = App()
        async with serving(serve_fn, app) as server:
            sock = trio.socket.socket()
            await sock.connect(("127.0.0.1", server.port))
            async with trio.SocketStream(sock) as stream:
                await stream.send_all(get("/endless"))
                await stream.receive_some(65536)
                # Closing with unread data makes the kernel send a reset.
            with trio.fail_after(5):
                await app.stream_done.wait()
            assert app.stream_outcome == "ended"
            async with httpx.AsyncClient() as client:
                response = await client.get(f"{server.url}/after")
            assert (response.status_code, response.text) == (200, "/after")


class TestReads:
    """Request bodies and many connections."""

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    async def test_large_request_body_streamed(
        self, serve_fn: Serve, chunked: bool, no_errors: None
    ) -> None:
        """A 1 MiB POST body reaches the app whole."""
        body = payload(1 << 20)

        async def pieces() -> AsyncIterator[bytes]:
            for offset in range(0, len(body), 100_000):
                yield body[offset : offset + 100_000]

        async with serving(serve_fn, App()) as server, httpx.AsyncClient() as client:
            response = await client.post(
                f"{server.url}/post", content=pieces() if chunked else body
            )
        assert response.status_code == 200
        assert response.text == f"{len(body)} {hashlib.sha256(body).hexdigest()}"

    async def test_concurrent_keep_alive_clients(self, serve_fn: Serve, no_errors: None) -> None:
        """50 connections x 20 requests each, every one answered on its own connection."""
        answered = 0

        async def one_client(port: int, index: int) -> None:
            nonlocal answered
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                client = RawClient(stream)
                for number in range(20):
                    path = f"/c{index}/r{number}"
                    await stream.send_all(get(path))
                    assert await client.response() == (200, path.encode())
                    answered += 1

        async with serving(serve_fn, App()) as server, trio.open_nursery() as nursery:
            for index in range(50):
                nursery.start_soon(one_client, server.port, index)
        assert answered == 1000


class TestTLS:
    """TLS keeps working: SSLStream writes stay serialised under the lock."""

    @pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
    async def test_concurrent_large_responses_over_tls(
        self, serve_fn: Serve, tmp_path: Path, http2: bool, no_errors: None
    ) -> None:
        """Eight concurrent 1 MiB responses; over h2 they share one connection."""
        certificate = ensure_local_certificate(tmp_path)
        size = 1 << 20
        async with (
            serving(
                serve_fn,
                App(),
                certfile=str(certificate.cert_path),
                keyfile=str(certificate.key_path),
            ) as server,
            httpx.AsyncClient(
                verify=ssl.create_default_context(cafile=certificate.ca_path), http2=http2
            ) as client,
        ):
            assert server.url.startswith("https://")
            responses: list[httpx.Response] = []

            async def fetch() -> None:
                responses.append(await client.get(f"{server.url}/size/{size}"))

            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(fetch)
        expected = hashlib.sha256(payload(size)).digest()
        assert len(responses) == 8
        for response in responses:
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            assert hashlib.sha256(response.content).digest() == expected


class TestVersionGuard:
    """The fast transport only runs on the hypercorn versions it was written for."""

    def test_supported_versions(self) -> None:
        """0.17.x and 0.18.x are supported, others are not, the installed one is."""
        assert supported_hypercorn("0.17.3")
        assert supported_hypercorn("0.18.0")
        assert not supported_hypercorn("0.16.0")
        assert not supported_hypercorn("0.19.0")
        assert not supported_hypercorn("1.0")
        assert supported_hypercorn()

    def test_select_serve(self) -> None:
        """The switch picks the fast or the stock serve function."""
        assert select_serve(True) is serve
        assert select_serve(False) is stock_serve

    async def test_unsupported_version_falls_back_with_warning(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no supported version, hypercorn's own worker serves and a warning says so."""
        monkeypatch.setattr(_fast_transport, "_SUPPORTED", ())
        with structlog.testing.capture_logs() as logs:
            async with serving(serve, App()) as server, httpx.AsyncClient() as client:
                response = await client.get(f"{server.url}/fallback")
        assert (response.status_code, response.text) == (200, "/fallback")
        assert [entry["event"] for entry in logs] == ["fast_transport_unsupported"]
        assert logs[0]["log_level"] == "warning"
