"""The service API: what a service author writes against.

A service is a class with a ``name`` and a ``handle`` method, Zato's shape::

    class Hello(Service):
        name = "demo.hello"
        class SimpleIO:
            input_required = ("who",)
        async def handle(self):
            self.response.payload = {"hello": self.request.input.who}

``async def handle`` is the native form and runs on the Trio loop; a plain
``def handle`` runs in a worker thread, Zato style, where ``self.invoke``
blocks and returns the result. A fresh instance handles each message.
"""

from __future__ import annotations

import inspect
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
import trio

from .exceptions import InvalidInput, InvalidOutput

if TYPE_CHECKING:
    from ._router import Router
    from .http._request import HttpRequest

__all__ = ["Bunch", "Request", "Resources", "Response", "Service"]


class Bunch(Mapping[str, Any]):
    """A read-only mapping whose keys are also attributes: ``input.file_name``."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    @classmethod
    def _adopt(cls, data: dict[str, Any]) -> Bunch:
        """A Bunch over ``data`` itself, without a copy: for a dict just built for it."""
        bunch = cls.__new__(cls)
        bunch._data = data
        return bunch

    def __getattr__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(key) from None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Bunch({self._data!r})"


_EMPTY = Bunch({})


@dataclass
class Request:
    """What a service receives.

    ``payload`` is what the caller sent, as sent (for HTTP: the parsed JSON or
    form body, else None); ``input`` holds the SimpleIO fields as a `Bunch`
    (absent optional ones as None) — for HTTP gathered from the query string,
    the body and the path parameters. ``http`` is set for REST channel requests.
    """

    payload: Any
    input: Bunch
    http: HttpRequest | None = None

    @property
    def raw_request(self) -> Any:
        """The HTTP body as bytes (read on first use), else the payload as sent."""
        if self.http is not None:
            return self.http.body.read()
        return self.payload


@dataclass
class Response:
    """What a service answers: ``payload`` is what ``invoke`` returns to the caller.

    For REST channels: a dict or list is sent as JSON, str as text, bytes as
    they are; ``status_code``, ``headers`` and ``content_type`` set the rest.
    """

    payload: Any = None
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass(frozen=True)
class Resources:
    """Outgoing connections handed to services: ``self.cloud`` and ``self.outgoing``.

    Each is a namespace of kinds (``cloud.dropbox``), each kind a mapping from
    connection name to connection. Tests inject fakes through `daemon.testing`.
    """

    cloud: Any = field(default_factory=lambda: Bunch({}))
    outgoing: Any = field(default_factory=lambda: Bunch({}))


def _names(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """SimpleIO accepts one name as a string or several as a tuple, as Zato does."""
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class SimpleIODeclaration:
    """A service's SimpleIO, read once at deploy time."""

    input_required: tuple[str, ...] = ()
    input_optional: tuple[str, ...] = ()
    output_required: tuple[str, ...] = ()
    output_optional: tuple[str, ...] = ()

    @classmethod
    def of(cls, service: type[Service]) -> SimpleIODeclaration:
        sio = getattr(service, "SimpleIO", None)
        if sio is None:
            return cls()
        return cls(**{name: _names(getattr(sio, name, ())) for name in cls.__dataclass_fields__})

    def parse_input(self, payload: Any) -> Bunch:
        """Return the input Bunch, or raise InvalidInput naming missing fields."""
        if not (self.input_required or self.input_optional):
            # dict first: isinstance against the Mapping ABC costs more than the rest.
            if type(payload) is dict or isinstance(payload, Mapping):
                return Bunch(payload)
            return _EMPTY
        if not isinstance(payload, Mapping):
            raise InvalidInput(
                f"expected an object with {', '.join(self.input_required or self.input_optional)},"
                f" got {type(payload).__name__}",
                missing=self.input_required,
            )
        missing = tuple(name for name in self.input_required if name not in payload)
        if missing:
            raise InvalidInput(f"missing required input: {', '.join(missing)}", missing=missing)
        data = dict(payload)
        for name in self.input_optional:
            data.setdefault(name, None)
        return Bunch._adopt(data)

    def check_output(self, service_name: str, payload: Any) -> None:
        """Raise InvalidOutput if a required output field is absent."""
        if not self.output_required:
            return
        present = payload if isinstance(payload, Mapping) else {}
        missing = [name for name in self.output_required if name not in present]
        if missing:
            raise InvalidOutput(
                f"service {service_name!r} returned no {', '.join(missing)}, "
                "which its SimpleIO declares as required output"
            )


class Service:
    """Base class of every service.

    Class attributes a service may set:

    - ``name``: how the service is reached (required);
    - ``concurrency``: how many messages it handles at once (default 8);
    - ``mailbox``: how many messages may wait for it; callers wait beyond that (default 100);
    - ``abstract = True``: a base class for other services, not deployed itself.

    Per message the daemon sets ``request``, ``response``, ``cid``, ``cloud``
    and ``outgoing`` before calling ``handle``.
    """

    name: ClassVar[str]
    concurrency: ClassVar[int] = 8
    mailbox: ClassVar[int] = 100
    abstract: ClassVar[bool] = False

    request: Request
    response: Response
    cid: str
    cloud: Any
    outgoing: Any

    def __init__(self, *, request: Request, cid: str, router: Router, resources: Resources) -> None:
        self.request = request
        self.response = Response()
        self.cid = cid
        self.cloud = resources.cloud
        self.outgoing = resources.outgoing
        self._router = router
        self._logger: structlog.typing.FilteringBoundLogger | None = None

    def handle(self) -> Any:
        """Handle one message: read ``self.request``, set ``self.response.payload``."""
        raise NotImplementedError(f"service {self.name!r} defines no handle method")

    @property
    def logger(self) -> Any:
        """A structlog logger bound to this service's name and the message's cid."""
        if self._logger is None:
            self._logger = structlog.get_logger("hotwire.service").bind(
                service=self.name, cid=self.cid
            )
        return self._logger

    @classmethod
    def is_async(cls) -> bool:
        """True when ``handle`` is a coroutine function and runs on the Trio loop."""
        return inspect.iscoroutinefunction(cls.handle)

    def invoke(self, name: str, payload: Any = None, *, timeout: float | None = None) -> Any:
        """Invoke service ``name`` with ``payload`` and return its response payload.

        In ``async def handle``, await the result; in a sync ``handle`` this
        blocks the worker thread. The target's errors raise here; ``timeout``
        (seconds) raises InvokeTimeout and cancels the target's work.
        """
        return self._call(self._router.invoke(name, payload, cid=self.cid, timeout=timeout))

    def invoke_async(self, name: str, payload: Any = None, *, durable: bool = False) -> Any:
        """Hand ``payload`` to service ``name`` without waiting for its answer.

        Returns the cid once the message is in the target's mailbox (waiting
        while it is full). With ``durable=True`` the message goes through the
        outbox instead: it survives restarts and failures of the target (which
        is retried with back-off), and the returned message id means it is on
        disk. Awaitable in ``async def handle``; blocking in sync.
        """
        if durable:
            return self._call(self._router.send_durable(name, payload, cid=self.cid))
        return self._call(self._router.send(name, payload, cid=self.cid))

    @staticmethod
    def _call(coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Hand back the coroutine on the Trio thread; run it from a worker thread."""
        if trio.lowlevel.in_trio_task():
            return coroutine

        async def run() -> Any:
            return await coroutine

        return trio.from_thread.run(run)
