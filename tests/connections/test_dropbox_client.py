"""build_dropbox_client: a real dropbox.Dropbox bound to its own endpoint and CA."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import dropbox
import pytest
import requests
import trio
from dropbox.session import HOST_API, HOST_CONTENT

from daemon.connections import build_dropbox_client, dropbox_session
from daemon.emulators import DropboxEmulator, DropboxEmulatorHandle

TOKEN = "client-test-token"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
T = TypeVar("T")


async def call(method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await trio.to_thread.run_sync(functools.partial(method, *args, **kwargs))


async def start(
    nursery: trio.Nursery, directory: Path
) -> tuple[DropboxEmulator, DropboxEmulatorHandle]:
    emulator = DropboxEmulator(
        directory / "root",
        tls_dir=directory / "tls",  # each emulator has its own CA
        access_tokens=[TOKEN],
        apps={"app-key": "app-secret"},
        refresh_tokens=["refresh-token"],
    )
    return emulator, await nursery.start(emulator.run)


def client_for(handle: DropboxEmulatorHandle, **options: Any) -> Any:
    options.setdefault("token", TOKEN)
    return build_dropbox_client(
        user_agent="hotwire-client-test",
        api_host=handle.api_host,
        content_host=handle.content_host,
        ca_certs=handle.ca_path,
        **options,
    )


@pytest.fixture(autouse=True)
def ca_bundle_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trap (b) needs the environment this machine (and many CI images) has."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE)
    monkeypatch.setenv("CURL_CA_BUNDLE", SYSTEM_BUNDLE)


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[tuple[DropboxEmulator, DropboxEmulatorHandle]]:
    async with trio.open_nursery() as nursery:
        yield await start(nursery, tmp_path)
        nursery.cancel_scope.cancel()


class TestTraps:
    """The SDK's two traps for a client pointed away from dropbox.com are defeated."""

    async def test_environment_ca_bundle_does_not_win(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """With REQUESTS_CA_BUNDLE set, the plain SDK ignores ca_certs; our client does not."""
        _, handle = peer
        plain = dropbox.Dropbox(TOKEN, ca_certs=str(handle.ca_path))
        plain._host_map.update({HOST_API: handle.api_host, HOST_CONTENT: handle.content_host})
        with pytest.raises(requests.exceptions.SSLError):  # the trap, still in the SDK
            await call(plain.files_list_folder, "")
        result = await call(client_for(handle).files_list_folder, "")
        assert result.entries == []

    async def test_refresh_goes_to_the_configured_host(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """Token refresh (first use, and after expiry) reaches the emulator, not dropbox.com."""
        emulator, handle = peer
        client = client_for(
            handle,
            token=None,
            refresh_token="refresh-token",
            app_key="app-key",
            app_secret="app-secret",
        )
        await call(client.files_upload, b"x", "/a.txt")
        emulator.faults.expire_access_tokens()
        await call(client.files_get_metadata, "/a.txt")
        refreshes = [r for r in emulator.requests if r.route == "oauth2/token"]
        assert [r.status for r in refreshes] == [200, 200]
        assert all(r.user_agent.startswith("hotwire-client-test/") for r in refreshes)

    async def test_clone_keeps_the_hosts(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """clone() rebuilds the client from import-time constants; ours keeps its hosts."""
        _, handle = peer
        clone = client_for(handle).clone(user_agent="hotwire-clone")
        await call(clone.files_upload, b"x", "/cloned.txt")
        assert clone._host_map[HOST_CONTENT] == handle.content_host


class TestIsolation:
    """Clients are configured one by one: nothing process-wide changes."""

    async def test_two_clients_two_emulators(self, tmp_path: Path) -> None:
        async with trio.open_nursery() as nursery:
            first, first_handle = await start(nursery, tmp_path / "one")
            second, second_handle = await start(nursery, tmp_path / "two")
            one, two = client_for(first_handle), client_for(second_handle)
            await call(one.files_upload, b"1", "/one.txt")
            await call(two.files_upload, b"2", "/two.txt")
            assert [p.name for p in first.root.iterdir() if p.is_file()] == ["one.txt"]
            assert [p.name for p in second.root.iterdir() if p.is_file()] == ["two.txt"]
            crossed = client_for(first_handle)
            crossed._host_map[HOST_API] = second_handle.api_host  # the other CA signed it
            with pytest.raises(requests.exceptions.SSLError):
                await call(crossed.files_list_folder, "")
            nursery.cancel_scope.cancel()

    async def test_shared_session(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """Clients may share one pool made by dropbox_session; the CA goes to the session."""
        _, handle = peer
        session = dropbox_session(ca_certs=handle.ca_path)
        shared = [
            build_dropbox_client(
                user_agent="shared",
                token=TOKEN,
                api_host=handle.api_host,
                content_host=handle.content_host,
                session=session,
            )
            for _ in range(2)
        ]
        for client in shared:
            await call(client.files_list_folder, "")
        assert shared[0]._session is shared[1]._session is session


class TestEnvironment:
    """The environment is read once, when the client is built, never per request."""

    @pytest.fixture(autouse=True)
    def no_other_proxy_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("https_proxy", "no_proxy", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)

    def test_proxies_per_host_honour_no_proxy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
        monkeypatch.setenv("NO_PROXY", "content.test")
        client = build_dropbox_client(
            user_agent="x", token="t", api_host="api.test:8443", content_host="content.test:8444"
        )
        assert client._session.trust_env is False
        assert client._session.proxies == {"https://api.test": "http://proxy.test:3128"}

    async def test_environment_proxy_is_used(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A proxy that refuses connections makes the call fail; bypassed, it succeeds."""
        _, handle = peer
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")
        monkeypatch.setenv("NO_PROXY", "")
        proxied = client_for(handle, max_retries_on_error=0)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = client_for(handle, max_retries_on_error=0)
        with pytest.raises(requests.exceptions.ProxyError):
            await call(proxied.files_list_folder, "")
        assert (await call(direct.files_list_folder, "")).entries == []


class TestRetries:
    """Failures the SDK leaves alone are handled by the client's connection pool."""

    async def test_dropped_connections_are_retried(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        emulator, handle = peer
        emulator.faults.drop_next(3)
        await call(client_for(handle).files_upload, b"x", "/a.txt")
        assert [r.status for r in emulator.requests] == [None, None, None, 200]

    async def test_drops_beyond_the_limit_fail(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        emulator, handle = peer
        emulator.faults.drop_next(3)
        client = client_for(handle, max_retries_on_error=2)
        with pytest.raises(requests.exceptions.ConnectionError):
            await call(client.files_list_folder, "")

    async def test_timeouts_are_not_retried(
        self, peer: tuple[DropboxEmulator, DropboxEmulatorHandle]
    ) -> None:
        """A timed-out request may still be running: it fails at once, without retries."""
        emulator, handle = peer
        emulator.faults.delay(1.0)
        client = client_for(handle, timeout=0.2)
        started = trio.current_time()
        with pytest.raises(requests.exceptions.ReadTimeout):
            await call(client.files_list_folder, "")
        assert trio.current_time() - started < 0.9
        emulator.faults.clear()


class TestArguments:
    def test_session_and_ca_certs_conflict(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="dropbox_session"):
            build_dropbox_client(
                user_agent="x", token="t", ca_certs=tmp_path / "ca.pem", session=dropbox_session()
            )

    def test_credentials_required(self) -> None:
        with pytest.raises(ValueError, match="refresh_token"):
            build_dropbox_client(user_agent="x", refresh_token="r")
