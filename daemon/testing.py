"""Test a service on its own, without the daemon, as nameko's ``worker_factory`` allows.

::

    from daemon.testing import run_service

    async def test_upload():
        dropbox = FakeDropbox()
        result = await run_service(
            UploadService, {"file_name": "a.txt", "data": b"hi"},
            cloud={"dropbox": {"My Connection": dropbox}},
        )

The service runs exactly as in the daemon — a real actor, SimpleIO checks,
sync ``handle`` in a worker thread — with the ``cloud`` and ``outgoing``
connections you pass instead of configured ones. Services it invokes must be
passed in ``also``; anything else raises ServiceNotFound, as in the daemon.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._router import Router
from ._service import Bunch, Resources, Service

__all__ = ["call_service", "run_service", "service_harness"]


def _namespace(kinds: Mapping[str, Mapping[str, Any]] | None) -> Bunch:
    return Bunch({kind: dict(connections) for kind, connections in (kinds or {}).items()})


@asynccontextmanager
async def service_harness(
    services: Iterable[type[Service]],
    *,
    cloud: Mapping[str, Mapping[str, Any]] | None = None,
    outgoing: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[Router]:
    """Deploy ``services`` into a private router and yield it; ``await router.invoke(...)``.

    ``cloud``/``outgoing`` map a kind to connections by name:
    ``{"dropbox": {"My Connection": fake}}`` becomes ``self.cloud.dropbox["My Connection"]``.
    """
    router = Router(resources=Resources(cloud=_namespace(cloud), outgoing=_namespace(outgoing)))
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        await router.swap(remove=(), add=services)
        try:
            yield router
        except BaseException as exc:
            # Raised again below, outside the nursery, so that the test sees the
            # service's own exception rather than an ExceptionGroup around it.
            error = exc
        with trio.CancelScope(shield=True):
            await router.close(grace=5)
    if error is not None:
        raise error


async def run_service(
    service: type[Service],
    payload: Any = None,
    *,
    also: Iterable[type[Service]] = (),
    cloud: Mapping[str, Mapping[str, Any]] | None = None,
    outgoing: Mapping[str, Mapping[str, Any]] | None = None,
    timeout: float | None = None,
) -> Any:
    """Invoke ``service`` once with ``payload`` and return its response payload."""
    async with service_harness([service, *also], cloud=cloud, outgoing=outgoing) as router:
        return await router.invoke(service.name, payload, timeout=timeout)


def call_service(service: type[Service], payload: Any = None, **options: Any) -> Any:
    """`run_service` for a plain (non-async) test: starts Trio, runs, returns the payload."""
    return trio.run(lambda: run_service(service, payload, **options))
