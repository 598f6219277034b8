"""daemon.testing: running one service alone with injected connections."""

from __future__ import annotations

import pytest

from daemon import Service, ServiceNotFound
from daemon.testing import call_service, run_service


class RecordingDropbox:
    """A test double for a Dropbox connection, as a service author would write one."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, bytes]] = []

    def files_upload(self, data: bytes, path: str) -> None:
        self.uploads.append((path, data))


class Upload(Service):
    name = "test.upload"

    class SimpleIO:
        input_required = ("file_name", "data")

    def handle(self) -> None:
        client = self.cloud.dropbox["My Connection"]
        client.files_upload(self.request.input.data, "/" + self.request.input.file_name)
        self.response.payload = {"uploaded": self.request.input.file_name}


class Caller(Service):
    name = "test.caller"

    async def handle(self) -> None:
        self.response.payload = await self.invoke("test.upload", self.request.payload)


async def test_run_service_with_fake_cloud() -> None:
    """A sync service runs with the fake connection it was given."""
    dropbox = RecordingDropbox()
    result = await run_service(
        Upload, {"file_name": "a.txt", "data": b"hi"}, cloud={"dropbox": {"My Connection": dropbox}}
    )
    assert result == {"uploaded": "a.txt"}
    assert dropbox.uploads == [("/a.txt", b"hi")]


async def test_invoked_services_must_be_given() -> None:
    """Invokes reach only the services passed in `also`, as in a daemon without them."""
    dropbox = RecordingDropbox()
    with pytest.raises(ServiceNotFound, match=r"test\.upload"):
        await run_service(Caller, {"file_name": "a", "data": b""})
    result = await run_service(
        Caller,
        {"file_name": "b", "data": b"x"},
        also=[Upload],
        cloud={"dropbox": {"My Connection": dropbox}},
    )
    assert result == {"uploaded": "b"}


def test_call_service_from_a_plain_test() -> None:
    """call_service starts Trio itself, for tests that are not async."""
    dropbox = RecordingDropbox()
    call_service(
        Upload, {"file_name": "c", "data": b"1"}, cloud={"dropbox": {"My Connection": dropbox}}
    )
    assert dropbox.uploads == [("/c", b"1")]
