"""REST channels against hypercorn on port 0, with a real HTTP client."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import httpx
import pytest
import trio
from http_setup import API_KEY, BASIC_PASSWORD
from support import open_stream

from daemon import Daemon


def assert_error(response: httpx.Response, status: int, message_part: str = "") -> None:
    """An error answer has the documented JSON shape, a cid, and no traceback."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert message_part in error["message"]
    assert error["cid"] == response.headers["x-hotwire-cid"]
    assert "Traceback" not in response.text


class TestRequests:
    async def test_raw_body_with_file_name(self, client: httpx.AsyncClient) -> None:
        """A raw POST body and a file_name query parameter reach a Zato-style sync service."""
        data = os.urandom(300_000)  # above the spool threshold: read back from disk
        response = await client.post("/api/upload", params={"file_name": "a.bin"}, content=data)
        assert response.status_code == 200
        assert response.json() == {
            "file_name": "a.bin",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    async def test_path_and_query_parameters(self, client: httpx.AsyncClient) -> None:
        """{param} segments and the query string land in http.params and SimpleIO input."""
        response = await client.get(
            "/api/echo/books/42", params={"q": "x"}, headers={"X-Test": "t"}
        )
        body = response.json()
        assert body["path_params"] == {"kind": "books", "id": "42"}
        assert body["params"] == {"kind": "books", "id": "42", "q": "x"}
        assert body["x_test"] == "t"
        assert body["method"] == "GET"

    async def test_json_in_and_out(self, client: httpx.AsyncClient) -> None:
        """A JSON body is the payload and feeds SimpleIO; a dict answer is JSON."""
        response = await client.post("/api/echo/a/1", json={"hello": ["world", 1]})
        assert response.headers["content-type"] == "application/json"
        assert response.json()["payload"] == {"hello": ["world", 1]}
        assert response.json()["input"]["hello"] == ["world", 1]
        response = await client.post("/api/needs", json={"name": "n", "count": 1})
        assert response.json() == {"name": "n"}

    async def test_text_status_and_headers(self, client: httpx.AsyncClient) -> None:
        """str payloads are text; the service sets status code and headers."""
        response = await client.get("/api/text")
        assert response.status_code == 201
        assert response.text == "created"
        assert response.headers["location"] == "/api/things/1"
        assert response.headers["content-type"].startswith("text/plain")


class TestErrors:
    async def test_missing_input_is_400_naming_fields(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.post("/api/needs", json={"name": "n"}), 400, "count")

    async def test_unknown_route_is_404(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.get("/api/nothing-here"), 404, "/api/nothing-here")

    async def test_wrong_method_is_405_with_allow(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/upload")
        assert_error(response, 405)
        assert response.headers["allow"] == "POST"

    async def test_body_over_limit_is_413(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.post("/api/small", content=b"x" * 2048), 413, "1024 bytes")

    async def test_huge_content_length_is_refused_before_reading(self, daemon: Daemon) -> None:
        """A 5 GiB Content-Length gets 413 at once, without the body being sent."""
        stream = await open_stream(daemon.url)
        async with stream:
            await stream.send_all(
                b"POST /api/small HTTP/1.1\r\nHost: x\r\nContent-Length: 5368709120\r\n\r\n"
            )
            with trio.fail_after(5):
                head = await stream.receive_some()
        assert head.startswith(b"HTTP/1.1 413")

    async def test_service_exception_is_500_without_details(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/api/fails")
        assert_error(response, 500, "see the daemon's log")
        assert "internal detail" not in response.text

    async def test_timeout_is_504(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.get("/api/slow", params={"seconds": 5}), 504, "0.2 s")

    async def test_invalid_json_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/echo/a/1", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert_error(response, 400, "not valid JSON")

    async def test_invalid_utf8_in_query_and_path_is_400(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.get("/api/echo/a/1?name=%ff%fe"), 400, "query")
        assert_error(await client.get("/api/echo/%ff/1"), 400, "path")


class TestSecurity:
    @pytest.mark.parametrize(
        ("credentials", "status"),
        [
            (("alice", BASIC_PASSWORD), 200),
            (("alice", "wrong"), 401),
            (("bob", BASIC_PASSWORD), 401),
            (None, 401),
        ],
        ids=["right", "wrong-password", "wrong-user", "missing"],
    )
    async def test_basic(
        self, client: httpx.AsyncClient, credentials: tuple[str, str] | None, status: int
    ) -> None:
        headers = {}
        if credentials:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        response = await client.get("/api/basic", headers=headers)
        assert response.status_code == status
        if status == 401:
            assert_error(response, 401)
            assert response.headers["www-authenticate"].startswith("Basic")
            assert BASIC_PASSWORD not in response.text

    @pytest.mark.parametrize(
        ("key", "status"),
        [(API_KEY, 200), ("nope", 401), (None, 401)],
        ids=["right", "wrong", "missing"],
    )
    async def test_api_key(self, client: httpx.AsyncClient, key: str | None, status: int) -> None:
        headers = {"X-API-Key": key} if key else {}
        response = await client.get("/api/key", headers=headers)
        assert response.status_code == status
        assert API_KEY not in response.text


class TestBadInputNeverKillsTheDaemon:
    async def test_huge_header(self, client: httpx.AsyncClient) -> None:
        """A 64 KiB header is refused by the server; the next request is served."""
        try:
            response = await client.get("/api/echo/a/1", headers={"X-Big": "x" * 65536})
        except httpx.RemoteProtocolError:
            pass  # the server may just close the connection
        else:
            assert response.status_code in (400, 431)
        assert (await client.get("/api/echo/a/1")).status_code == 200

    async def test_disconnect_mid_upload_removes_the_spool_file(
        self, daemon: Daemon, client: httpx.AsyncClient
    ) -> None:
        """A client gone mid-upload leaves no partial file behind."""
        spool = daemon.config.paths.state / "http-spool"
        stream = await open_stream(daemon.url)
        await stream.send_all(
            b"POST /api/save?target=/dev/null HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 10000000\r\n\r\n" + b"x" * 500_000
        )
        with trio.fail_after(10):
            # No event exists for a file appearing, nor for the server seeing the EOF.
            while not (spool.exists() and any(spool.iterdir())):  # noqa: ASYNC110
                await trio.sleep(0.01)
        await stream.aclose()
        with trio.fail_after(10):
            while daemon.gateway.requests["/api/save", 499] == 0:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert list(spool.iterdir()) == []
        assert (await client.get("/api/echo/a/1")).status_code == 200

    async def test_two_hundred_concurrent_uploads(self, client: httpx.AsyncClient) -> None:
        payloads = [os.urandom(1000 + i * 500) for i in range(200)]
        results: dict[int, httpx.Response] = {}

        async def upload(index: int) -> None:
            results[index] = await client.post(
                "/api/upload", params={"file_name": f"f{index}"}, content=payloads[index]
            )

        async with trio.open_nursery() as nursery:
            for index in range(200):
                nursery.start_soon(upload, index)
        for index, response in results.items():
            assert response.status_code == 200
            assert response.json()["sha256"] == hashlib.sha256(payloads[index]).hexdigest()
        assert len(results) == 200

    async def test_streamed_body_saved_by_rename(
        self, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        """A body over the spool threshold is streamed to disk and handed over as a file."""
        data = os.urandom(3 * 1024 * 1024)
        target = tmp_path / "saved.bin"
        response = await client.post("/api/save", params={"target": str(target)}, content=data)
        assert response.json() == {"saved": str(target), "size": len(data)}
        assert target.read_bytes() == data


async def test_metrics(client: httpx.AsyncClient) -> None:
    """/metrics exposes per-service counters and per-channel answers by status."""
    await client.get("/api/echo/a/1")
    await client.get("/api/fails")
    text = (await client.get("/metrics")).text
    assert 'hotwire_service_invocations_total{service="http.echo"} 1.0' in text
    assert 'hotwire_service_errors_total{service="http.fails"} 1.0' in text
    assert 'hotwire_service_latency_seconds_count{service="http.echo"} 1.0' in text
    assert 'hotwire_channel_requests_total{channel="/api/fails",status="500"} 1.0' in text
