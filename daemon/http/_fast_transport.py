"""A faster connection transport for hypercorn's Trio worker.

hypercorn's sans-IO protocol layer (``ProtocolWrapper``, h11, h2, lifespan) is
fast enough; its Trio glue is what costs (issue 8, measured on hypercorn 0.18):

* per request, ``TCPServer`` stops and restarts its idle-timeout task through
  ``TrioSingleTask`` -- a lock, a cancellation and a ``nursery.start`` each time;
* every write takes a ``trio.Lock`` and a shielded cancel scope, three times per
  response, the empty end-of-message write of h11 included;
* every read enters a ``fail_after`` cancel scope, infinite unless a read
  timeout is configured (it is not by default).

`FastTCPServer` keeps hypercorn's ``TCPServer`` and changes only those three things:
one long-lived idle watcher per connection whose *deadline* is moved, a
write path that takes the send lock without yielding when nobody else holds it
(the common case) and skips empty writes, and a read loop that enters a cancel
scope only when there is a read timeout. Everything else -- TLS, h2, the
WorkerContext, lifespan, graceful shutdown -- is hypercorn's own code, so the
module is written to be proposable upstream as a patch to ``tcp_server.py``.

It relies on hypercorn internals, so `serve` uses it only for the hypercorn
versions it was checked against and otherwise falls back to hypercorn's own
worker with a warning.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Awaitable, Callable
from functools import partial
from math import inf
from random import randint
from typing import Literal

import structlog
import trio
from hypercorn.config import Config, Sockets
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.run import worker_serve
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.udp_server import UDPServer
from hypercorn.trio.worker_context import TrioSingleTask, WorkerContext
from hypercorn.typing import (
    AppWrapper,
    ConnectionState,
    Framework,
    LifespanState,
    TaskGroup,
)
from hypercorn.typing import Event as HypercornEvent
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr, wrap_app

__all__ = ["FastTCPServer", "select_serve", "serve", "stock_serve", "supported_hypercorn"]

log = structlog.stdlib.get_logger(__name__)

# hypercorn versions whose trio/tcp_server.py this subclass was checked against:
# 0.18.0 (tested) and 0.17.3 (same TCPServer and TrioSingleTask, typing aside).
_SUPPORTED = ((0, 17), (0, 18))

ServeFunction = Callable[..., Awaitable[None]]


def supported_hypercorn(version: str | None = None) -> bool:
    """Say whether `FastTCPServer` was written for this hypercorn version.

    ``version`` defaults to the installed one.
    """
    if version is None:
        version = importlib.metadata.version("hypercorn")
    major_minor = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    return major_minor in _SUPPORTED


class _IdleTimer(TrioSingleTask):
    """The idle timeout of one connection, kept as a deadline rather than a task.

    Stands in for ``TCPServer.idle_task``. hypercorn calls ``restart`` when the
    connection becomes idle and ``stop`` when a request arrives. Here the first
    ``restart`` spawns one watcher for the connection's lifetime; every later
    call only moves the watcher's deadline: no lock, no cancellation, no new
    task. When the deadline passes the watcher runs the action it was started
    with (the server-side close). While the worker shuts down, an idle
    connection closes at once and a busy one as soon as it becomes idle, as
    with hypercorn's task.
    """

    def __init__(self, timeout: float, terminated: HypercornEvent) -> None:
        # TrioSingleTask.__init__ is deliberately not called: its lock and task
        # handle are exactly what this class does without.
        self._timeout = timeout
        self._terminated = terminated
        self._scope = trio.CancelScope()
        self._idle = False
        self._spawned = False
        self._cancelled = False

    async def restart(self, task_group: TaskGroup, action: Callable[[], Awaitable[None]]) -> None:
        self._idle = True
        self._arm()
        if not self._spawned:
            self._spawned = True
            task_group.spawn(self._watch, action)

    async def stop(self) -> None:
        self._idle = False
        self._scope.deadline = inf

    def cancel(self) -> None:
        """End the watcher without running its action: the connection is done."""
        self._cancelled = True
        self._spawned = True  # a late restart() must not spawn another watcher
        self._scope.cancel()

    def _arm(self) -> None:
        # A connection that goes idle during shutdown is closed right away.
        self._scope.deadline = (
            -inf if self._terminated.is_set() else trio.current_time() + self._timeout
        )

    async def _watch(self, on_timeout: Callable[[], Awaitable[None]]) -> None:
        with self._scope:
            await self._terminated.wait()
            if self._idle:
                self._arm()
            await trio.sleep_forever()
        if not self._cancelled:
            await on_timeout()


class FastTCPServer(TCPServer):
    """hypercorn's per-connection server with a cheaper idle timeout and writes.

    Constructed and run exactly like ``hypercorn.trio.tcp_server.TCPServer``.
    """

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SSLStream[trio.SocketStream],
    ) -> None:
        super().__init__(app, config, context, state, stream)
        self.idle_task = self._idle_timer = _IdleTimer(
            config.keep_alive_timeout, context.terminated
        )
        # os.write() on the socket's descriptor is POSIX only.
        self._plain_fd = os.name == "posix" and isinstance(stream, trio.SocketStream)

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            await self._send_data(event.data)
        else:
            await super().protocol_send(event)  # Closed, Updated (-> _IdleTimer)

    async def _send_data(self, data: bytes) -> None:
        if not data:
            # h11 ends a Content-Length body with b"": there is nothing to write.
            return
        # The lock keeps writes from interleaving (and SSLStream.send_all from
        # ever running twice at once). Uncontended -- nearly always -- it is
        # taken without a scheduler round trip; contended, we queue as
        # hypercorn does. Cancellation is seen before any byte is written, and
        # the rest is shielded so a cancel never leaves half a frame behind.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self.send_lock.acquire()
        try:
            sent = self._write_nowait(data)
            if sent < len(data):
                with trio.CancelScope(shield=True):
                    await self.stream.send_all(memoryview(data)[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self.protocol.handle(Closed())
        finally:
            self.send_lock.release()

    def _write_nowait(self, data: bytes) -> int:
        """Hand ``data`` to the kernel without yielding; return how much it took.

        A response usually fits the socket's send buffer, so this is the whole
        write and costs no trip through the scheduler (the awaited path costs
        one per write, which is most of the difference measured in issue 8).
        Only plain sockets on POSIX qualify; TLS and others return 0 and go
        through ``send_all``. Not yielding here is safe for fairness: the app
        yields at its next ``receive``, and a body larger than the socket
        buffer reaches ``send_all``, which waits for room.
        """
        if not self._plain_fd:
            return 0
        fd = self.stream.socket.fileno()
        if fd == -1:
            raise trio.ClosedResourceError("the connection's socket is closed")
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0  # the send buffer is full: send_all waits for room
        except OSError as error:
            raise trio.BrokenResourceError(f"write failed: {error}") from error

    async def _read_data(self) -> None:
        """hypercorn's read loop, entering a cancel scope only when a read timeout is set.

        hypercorn wraps every read in ``fail_after(read_timeout or inf)``: a
        cancel scope per request even with no timeout, the default.
        """
        timeout = self.config.read_timeout
        try:
            while True:
                try:
                    if not timeout:  # None or 0: hypercorn's "no read timeout"
                        data = await self.stream.receive_some(MAX_RECV)
                    else:
                        with trio.fail_after(timeout):
                            data = await self.stream.receive_some(MAX_RECV)
                except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                    break
                await self.protocol.handle(RawData(bytes(data)))
                if data == b"":
                    break
            await self.protocol.handle(Closed())
        finally:
            # Nothing is left to time out once the peer or the server closed.
            self._idle_timer.cancel()

    async def _idle_timeout(self) -> None:
        # _IdleTimer has done the waiting; what is left of hypercorn's version
        # is the close.
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()


async def _worker_serve(
    app: AppWrapper,
    config: Config,
    *,
    sockets: Sockets | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``hypercorn.trio.run.worker_serve`` with `FastTCPServer` as the handler.

    Kept line for line with hypercorn's so the two can be diffed; upstream this
    would be a ``tcp_server_class`` parameter rather than a copy.
    """
    config.set_statsd_logger_class(StatsdLogger)

    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    max_requests = None
    if config.max_requests is not None:
        max_requests = config.max_requests + randint(0, config.max_requests_jitter)
    context = WorkerContext(max_requests)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async with trio.open_nursery() as server_nursery:
            if sockets is None:
                sockets = config.create_sockets()
                for sock in sockets.secure_sockets:
                    sock.listen(config.backlog)
                for sock in sockets.insecure_sockets:
                    sock.listen(config.backlog)

            ssl_context = config.create_ssl_context()
            listeners: list[trio.SSLListener[trio.SocketStream] | trio.SocketListener] = []
            binds = []
            for sock in sockets.secure_sockets:
                listeners.append(
                    trio.SSLListener(
                        trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
                        ssl_context,  # type: ignore[arg-type]  # set when secure
                        https_compatible=True,
                    )
                )
                bind = repr_socket_addr(sock.family, sock.getsockname())
                binds.append(f"https://{bind}")
                await config.log.info(f"Running on https://{bind} (CTRL + C to quit)")

            for sock in sockets.insecure_sockets:
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                bind = repr_socket_addr(sock.family, sock.getsockname())
                binds.append(f"http://{bind}")
                await config.log.info(f"Running on http://{bind} (CTRL + C to quit)")

            for sock in sockets.quic_sockets:
                await server_nursery.start(
                    UDPServer(
                        app, config, context, ConnectionState(lifespan_state.copy()), sock
                    ).run
                )
                bind = repr_socket_addr(sock.family, sock.getsockname())
                await config.log.info(f"Running on https://{bind} (QUIC) (CTRL + C to quit)")

            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)

                    nursery.start_soon(
                        partial(
                            trio.serve_listeners,
                            partial(
                                FastTCPServer,
                                app,
                                config,
                                context,
                                ConnectionState(lifespan_state.copy()),
                            ),
                            listeners,
                            handler_nursery=server_nursery,
                        ),
                    )

                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from None
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout

        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


async def serve(
    app: Framework,
    config: Config,
    *,
    sockets: Sockets | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    mode: Literal["asgi", "wsgi"] | None = None,
) -> None:
    """Serve ``app`` like ``hypercorn.trio.serve``, on the fast transport.

    Same contract as hypercorn's: ``task_status.started`` gets the bound URLs
    (``["http://127.0.0.1:8000"]``); when ``shutdown_trigger`` returns, the
    listeners close, requests in flight get ``config.graceful_timeout`` to
    finish, then the rest is cancelled and lifespan shutdown runs.
    ``sockets`` serves sockets already bound and listening (trio's
    SocketListener refuses others) instead of ``config.bind``. With a
    hypercorn version this module was not written for, hypercorn's own
    worker serves instead, with a warning.
    """
    wrapped = wrap_app(app, config.wsgi_max_body_size, mode)
    worker: ServeFunction = _worker_serve
    if not supported_hypercorn():
        log.warning(
            "fast_transport_unsupported",
            hypercorn=importlib.metadata.version("hypercorn"),
            supported=[f"{major}.{minor}.x" for major, minor in _SUPPORTED],
            fallback="hypercorn.trio",
        )
        worker = worker_serve
    await worker(
        wrapped, config, sockets=sockets, shutdown_trigger=shutdown_trigger, task_status=task_status
    )


async def stock_serve(
    app: Framework,
    config: Config,
    *,
    sockets: Sockets | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    mode: Literal["asgi", "wsgi"] | None = None,
) -> None:
    """``hypercorn.trio.serve`` with the same signature as `serve` (``sockets`` too)."""
    await worker_serve(
        wrap_app(app, config.wsgi_max_body_size, mode),
        config,
        sockets=sockets,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )


def select_serve(fast: bool) -> ServeFunction:
    """Return `serve` or `stock_serve`, for ``[server] fast_transport = true|false``."""
    return serve if fast else stock_serve
