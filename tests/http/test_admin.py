"""The admin API: token, every route, secrets never shown, reload, and `hotwire invoke`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import httpx
import pytest
import structlog
import trio
from http_setup import ADMIN_TOKEN, API_KEY, BASIC_PASSWORD

from daemon import Daemon

PROTECTED = [
    ("GET", "/admin/services"),
    ("GET", "/admin/services/http.echo"),
    ("POST", "/admin/services/http.needs/invoke"),
    ("GET", "/admin/deployments"),
    ("GET", "/admin/channels"),
    ("GET", "/admin/connections"),
    ("POST", "/admin/reload"),
    ("GET", "/admin/openapi.json"),
]


class TestToken:
    @pytest.mark.parametrize(("method", "path"), PROTECTED)
    @pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
    async def test_refused_without_the_right_token(
        self, client: httpx.AsyncClient, method: str, path: str, token: str | None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["status"] == 401

    async def test_health_and_ready_need_no_token(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/admin/health")).json()["status"] == "alive"
        ready = await client.get("/admin/ready")
        assert ready.status_code == 200 and ready.json() == {"ready": True}

    async def test_generated_token_file_is_private(self, tmp_path: Path, config_path: Path) -> None:
        """Without a configured token one is generated into the state dir with mode 0600."""
        from daemon import load_config
        from daemon.http import admin_token, token_path

        config_path.write_text(config_path.read_text().replace(f'token = "{ADMIN_TOKEN}"', ""))
        config = load_config(config_path)
        first = admin_token(config)
        assert first and admin_token(config) == first
        assert token_path(config).stat().st_mode & 0o777 == 0o600


class TestRoutes:
    async def test_services_and_details(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        await client.get("/api/echo/a/1")
        names = [s["name"] for s in (await admin.get("/admin/services")).json()["services"]]
        assert "http.echo" in names and "http.upload" in names
        details = (await admin.get("/admin/services/http.echo")).json()
        assert details["invocations"] == 1 and details["errors"] == 0
        assert details["file"] == "http_services.py"
        assert details["mean_ms"] >= 0 and details["p99_ms"] >= 0
        assert (await admin.get("/admin/services/nope")).status_code == 404

    async def test_invoke(self, admin: httpx.AsyncClient) -> None:
        response = await admin.post(
            "/admin/services/http.needs/invoke", json={"name": "x", "count": 2}
        )
        assert response.status_code == 200
        assert response.json()["response"] == {"name": "x"}
        missing = await admin.post("/admin/services/http.needs/invoke", json={})
        assert missing.status_code == 400 and "name, count" in missing.json()["error"]["message"]
        unknown = await admin.post("/admin/services/nope/invoke")
        assert unknown.status_code == 404
        bad = await admin.post("/admin/services/http.needs/invoke", content=b"{nope")
        assert bad.status_code == 400

    async def test_deployments_channels_connections(self, admin: httpx.AsyncClient) -> None:
        files = (await admin.get("/admin/deployments")).json()["files"]
        assert files[0]["file"] == "http_services.py" and files[0]["status"] == "deployed"
        channels = (await admin.get("/admin/channels")).json()["channels"]
        basic = next(c for c in channels if c["path"] == "/api/basic")
        assert basic["security"] == {
            "type": "basic",
            "username": "alice",
            "header": None,
            "credentials": "set",
        }
        assert (await admin.get("/admin/connections")).json() == {"connections": []}

    async def test_openapi_describes_every_route(self, admin: httpx.AsyncClient) -> None:
        document = (await admin.get("/admin/openapi.json")).json()
        assert document["openapi"].startswith("3.")
        for method, path in PROTECTED:
            assert (
                method.lower()
                in document["paths"][
                    path.replace("http.echo", "{name}").replace("http.needs", "{name}")
                ]
            )
        assert document["paths"]["/admin/health"]["get"]["security"] == []

    async def test_secrets_never_appear(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No admin answer and no log line carries a credential's value."""
        caplog.set_level(logging.DEBUG)
        with structlog.testing.capture_logs() as logs:
            texts = [(await admin.request(m, p)).text for m, p in PROTECTED]
            await client.get("/api/basic", auth=("alice", "wrong"))
            await client.get("/api/key", headers={"X-API-Key": "wrong"})
        everything = "\n".join(texts) + repr(logs) + caplog.text
        for secret in (BASIC_PASSWORD, API_KEY, ADMIN_TOKEN):
            assert secret not in everything


class TestReload:
    async def test_changed_channel_is_served_after_reload(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient, config_path: Path
    ) -> None:
        assert (await client.get("/api/new")).status_code == 404
        config_path.write_text(
            config_path.read_text()
            + '\n[[channels.rest]]\npath = "/api/new"\nservice = "http.text"\nmethods = ["GET"]\n'
        )
        response = await admin.post("/admin/reload")
        assert response.status_code == 200, response.text
        assert response.json()["restart_required"] == []
        assert (await client.get("/api/new")).status_code == 201

    async def test_broken_config_keeps_the_old_one(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient, config_path: Path
    ) -> None:
        config_path.write_text(config_path.read_text() + "\n[[channels.rest]]\npath = 12\n")
        response = await admin.post("/admin/reload")
        assert response.status_code == 400
        assert "channels.rest[11].path" in response.json()["error"]["message"]
        assert (await client.get("/api/text")).status_code == 201


async def test_hotwire_invoke_command(daemon: Daemon, config_path: Path) -> None:
    """`hotwire invoke` talks to the running daemon's admin API and prints the answer."""
    command = [
        sys.executable,
        "-m",
        "daemon",
        "invoke",
        "--config",
        str(config_path),
        "--url",
        daemon.url,
    ]
    ok = await trio.run_process(
        [*command, "http.needs", "--payload", '{"name": "cli", "count": 1}'],
        capture_stdout=True,
    )
    assert json.loads(ok.stdout)["response"] == {"name": "cli"}
    failed = await trio.run_process(
        [*command, "http.needs", "--payload", "{}"], capture_stdout=True, check=False
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"]["status"] == 400
