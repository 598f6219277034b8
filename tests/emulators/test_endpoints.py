"""The emulators' endpoints as the supervisor hands them to its workers."""

from pathlib import Path

import pytest

from daemon.connections import DropboxEndpoint, FtpEndpoint
from daemon.emulators import EmulatorEndpoints


@pytest.mark.parametrize("ftp_ca", [None, Path("/state/tls/ca.pem")], ids=["ftp", "ftps"])
def test_json_round_trip(ftp_ca: Path | None) -> None:
    endpoints = EmulatorEndpoints(
        dropbox=DropboxEndpoint("127.0.0.1:1", "127.0.0.1:2", Path("/state/tls/ca.pem"), "tok"),
        ftp=FtpEndpoint("127.0.0.1", 21, "hotwire", "secret", ftp_ca),
    )
    assert EmulatorEndpoints.from_json(endpoints.to_json()) == endpoints
    assert EmulatorEndpoints.from_json(EmulatorEndpoints().to_json()) == EmulatorEndpoints()
    assert EmulatorEndpoints.from_json("{}") == EmulatorEndpoints()
