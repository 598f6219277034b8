"""The public ports of the Dropbox emulator: raw TCP relays in front of hypercorn.

Why a relay: an ASGI application cannot close its connection without
answering (hypercorn turns a silent application into a 500), yet a connection
dropped with no response is the failure a client's retry logic must survive.
The relay owns the client's socket, so the application can ask it to close
one. It also tells which public port (``api`` or ``content``) a request came
through, so routes sent to the wrong host are refused as by the real API.
Bytes pass through untouched: TLS runs end to end between client and hypercorn.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

#: Each direction of a connection reads into one buffer of this size, reused.
_BUFFER_SIZE = 1 << 17


@dataclass
class _Connection:
    front: str
    cancel_scope: trio.CancelScope


class Relay:
    """Forwards each public connection to hypercorn's private port."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        # keyed by the relay's own address towards hypercorn, which hypercorn
        # reports as the ASGI scope's "client"
        self._connections: dict[tuple[str, int], _Connection] = {}

    def front_of(self, client: tuple[str, int] | None) -> str | None:
        """Return the public port name (``api``, ``content``) a request came through."""
        connection = self._connections.get(client) if client else None
        return connection.front if connection else None

    def drop(self, client: tuple[str, int] | None) -> None:
        """Close the public connection behind hypercorn's ``client`` without another byte."""
        connection = self._connections.get(client) if client else None
        if connection is not None:
            connection.cancel_scope.cancel()

    async def serve(self, listener: trio.SocketListener, front: str) -> None:
        """Accept connections on ``listener`` until cancelled, tagging them with ``front``."""
        async with listener, trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._forward, stream, front)

    async def _forward(self, downstream: trio.SocketStream, front: str) -> None:
        async with downstream:
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", self._upstream_port)
            except OSError:
                return
            async with upstream:
                host, port = upstream.socket.getsockname()[:2]
                key = (host, port)
                with trio.CancelScope() as scope:
                    self._connections[key] = _Connection(front, scope)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(_pump, downstream, upstream, nursery.cancel_scope)
                            nursery.start_soon(_pump, upstream, downstream, nursery.cancel_scope)
                    finally:
                        del self._connections[key]


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope) -> None:
    """Copy one direction; when either side ends, end the whole connection.

    Reads go straight into a buffer reused for the connection's life (the
    stream's ``receive_some`` would allocate a new bytes object per read), and
    are sent from a view of it: no copy beyond the kernel's.
    """
    buffer = bytearray(_BUFFER_SIZE)
    view = memoryview(buffer)
    try:
        while size := await source.socket.recv_into(buffer):
            await sink.send_all(view[:size])
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the peer went away (or reset the connection): closing it is the answer
    finally:
        both.cancel()
