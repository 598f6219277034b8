"""The Dropbox emulator, driven by the real dropbox SDK over HTTPS on loopback."""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio
from dropbox import files
from dropbox.content_hash import content_hash
from dropbox.exceptions import ApiError, AuthError, BadInputError
from dropbox_backoff import without_backoff

from daemon.connections import build_dropbox_client
from daemon.emulators import DropboxEmulator, DropboxEmulatorHandle
from daemon.emulators._dropbox_routes import Body
from daemon.emulators._dropbox_store import STAGING_NAME

TOKEN = "emulator-test-token"
USER_AGENT = "hotwire-test/1.0"
T = TypeVar("T")


@dataclass
class Peer:
    emulator: DropboxEmulator
    handle: DropboxEmulatorHandle
    client: Any  # a real dropbox.Dropbox

    async def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking SDK call in a thread, as the daemon does."""
        return await trio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

    async def download(self, path: str) -> tuple[Any, bytes]:
        """Download in a thread, body included: the body is read from the emulator's loop."""

        def download() -> tuple[Any, bytes]:
            metadata, response = self.client.files_download(path)
            with response:
                return metadata, response.content

        return await trio.to_thread.run_sync(download)

    def http(self, **options: Any) -> httpx.AsyncClient:
        """A plain HTTPS client trusting the emulator, to look at the wire itself."""
        context = ssl.create_default_context(cafile=self.handle.ca_path)
        return httpx.AsyncClient(verify=context, **options)

    def client_for(self, **options: Any) -> Any:
        return build_dropbox_client(
            user_agent=USER_AGENT,
            api_host=self.handle.api_host,
            content_host=self.handle.content_host,
            ca_certs=self.handle.ca_path,
            **options,
        )


async def start_peer(nursery: trio.Nursery, tmp_path: Path, **options: Any) -> Peer:
    emulator = DropboxEmulator(
        tmp_path / "dropbox", tls_dir=tmp_path / "tls", access_tokens=[TOKEN], **options
    )
    handle: DropboxEmulatorHandle = await nursery.start(emulator.run)
    peer = Peer(emulator, handle, None)
    peer.client = peer.client_for(token=TOKEN)
    return peer


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    async with trio.open_nursery() as nursery:
        peer = await start_peer(nursery, tmp_path)
        yield peer
        peer.client.close()
        nursery.cancel_scope.cancel()


def api_error(excinfo: pytest.ExceptionInfo[ApiError]) -> Any:
    return excinfo.value.error


class TestFiles:
    """Uploads, reads, listings and deletes land in the root directory as Dropbox paths."""

    async def test_upload_then_read_back(self, peer: Peer) -> None:
        """An upload is stored at its path and comes back identical by metadata and download."""
        data = b"hello dropbox\n" * 1000
        uploaded = await peer.call(peer.client.files_upload, data, "/Reports/a.txt")
        assert (peer.emulator.root / "Reports" / "a.txt").read_bytes() == data
        assert uploaded.path_display == "/Reports/a.txt"
        assert uploaded.path_lower == "/reports/a.txt"
        assert uploaded.size == len(data)
        assert uploaded.content_hash == content_hash(data)

        metadata = await peer.call(peer.client.files_get_metadata, "/reports/A.TXT")
        assert isinstance(metadata, files.FileMetadata)
        assert (metadata.rev, metadata.id) == (uploaded.rev, uploaded.id)
        folder = await peer.call(peer.client.files_get_metadata, "/reports")
        assert isinstance(folder, files.FolderMetadata)

        downloaded, content = await peer.download("/Reports/a.txt")
        assert content == data
        assert downloaded.rev == uploaded.rev

    async def test_paths_are_case_insensitive(self, peer: Peer) -> None:
        """A second upload differing only in case overwrites the first, keeping its name."""
        await peer.call(peer.client.files_upload, b"one", "/Docs/Note.txt")
        mode = files.WriteMode.overwrite
        second = await peer.call(peer.client.files_upload, b"two", "/docs/NOTE.txt", mode=mode)
        assert second.path_display == "/Docs/Note.txt"
        assert [p.name for p in (peer.emulator.root / "Docs").iterdir()] == ["Note.txt"]

    async def test_client_modified_is_kept(self, peer: Peer) -> None:
        """The client_modified of an upload is reported back (second precision)."""
        when = datetime(2024, 5, 17, 8, 30, 15)
        uploaded = await peer.call(
            peer.client.files_upload, b"x", "/dated.txt", client_modified=when
        )
        assert uploaded.client_modified == when

    async def test_list_folder_pages_and_changes(self, peer: Peer) -> None:
        """list_folder pages with its limit; continue then reports files written since."""
        for name in ("a", "b", "c"):
            await peer.call(peer.client.files_upload, name.encode(), f"/box/{name}.txt")
        await peer.call(peer.client.files_upload, b"deep", "/box/sub/d.txt")

        first = await peer.call(peer.client.files_list_folder, "/box", limit=2)
        assert [e.name for e in first.entries] == ["a.txt", "b.txt"]
        assert first.has_more
        rest = await peer.call(peer.client.files_list_folder_continue, first.cursor)
        assert [e.name for e in rest.entries] == ["c.txt", "sub"]
        assert not rest.has_more

        await peer.call(peer.client.files_upload, b"new", "/box/e.txt")
        changes = await peer.call(peer.client.files_list_folder_continue, rest.cursor)
        assert [e.name for e in changes.entries] == ["e.txt"]

        everything = await peer.call(peer.client.files_list_folder, "", recursive=True)
        assert "/box/sub/d.txt" in {e.path_lower for e in everything.entries}
        assert ".dropbox.cache" not in {e.name for e in everything.entries}

    async def test_list_folder_errors(self, peer: Peer) -> None:
        """The root must be "", a file is not a folder, a missing folder is not found."""
        await peer.call(peer.client.files_upload, b"x", "/file.txt")
        with pytest.raises(BadInputError, match="empty string"):
            await peer.call(peer.client.files_list_folder, "/")
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_list_folder, "/file.txt")
        assert api_error(excinfo).get_path().is_not_folder()
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_list_folder, "/nowhere")
        assert api_error(excinfo).get_path().is_not_found()
        with pytest.raises(BadInputError, match="cursor"):
            await peer.call(peer.client.files_list_folder_continue, "not-a-cursor")

    async def test_delete(self, peer: Peer) -> None:
        """delete_v2 removes files and whole folders, and reports a missing path."""
        await peer.call(peer.client.files_upload, b"x", "/gone/a.txt")
        await peer.call(peer.client.files_upload, b"y", "/gone/b.txt")
        result = await peer.call(peer.client.files_delete_v2, "/gone/A.txt")
        assert result.metadata.name == "a.txt"
        result = await peer.call(peer.client.files_delete_v2, "/gone")
        assert isinstance(result.metadata, files.FolderMetadata)
        assert not (peer.emulator.root / "gone").exists()
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_delete_v2, "/gone")
        assert api_error(excinfo).get_path_lookup().is_not_found()

    async def test_download_of_missing_or_folder(self, peer: Peer) -> None:
        """Downloading a missing path or a folder fails as the real API does."""
        await peer.call(peer.client.files_upload, b"x", "/dir/a.txt")
        with pytest.raises(ApiError) as excinfo:
            await peer.download("/missing.txt")
        assert api_error(excinfo).get_path().is_not_found()
        with pytest.raises(ApiError) as excinfo:
            await peer.download("/dir")
        assert api_error(excinfo).get_path().is_not_file()


class TestPathRules:
    """Paths the real API refuses are refused with its errors."""

    @pytest.mark.parametrize(
        "path", ["/trailing/", "/double//slash", "/up/../escape", "/../escape", "/up/./escape"]
    )
    async def test_malformed_paths(self, peer: Peer, path: str, tmp_path: Path) -> None:
        """Refused, and nothing written: not outside the root, not inside it under another name."""
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_upload, b"x", path)
        assert api_error(excinfo).get_path().reason.is_malformed_path()
        root = peer.emulator.root
        assert sorted(p.name for p in tmp_path.iterdir()) == [root.name, "tls"]
        assert [p.name for p in root.iterdir()] == [STAGING_NAME]  # (the data stays staged)

    async def test_disallowed_name(self, peer: Peer) -> None:
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_upload, b"x", "/folder/desktop.ini")
        assert api_error(excinfo).get_path().reason.is_disallowed_name()

    async def test_unsupported_path_form(self, peer: Peer) -> None:
        """id: paths are valid for the SDK but not served by the emulator (400)."""
        with pytest.raises(BadInputError, match="rooted paths"):
            await peer.call(peer.client.files_get_metadata, "id:abcdef")


class TestWriteModes:
    """add, overwrite and update(rev) conflict as on Dropbox; autorename picks a free name."""

    async def conflict(self, peer: Peer, path: str, **options: Any) -> Any:
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_upload, b"other", path, **options)
        error = api_error(excinfo)
        assert error.is_path()
        return error.get_path().reason.get_conflict()

    async def test_add(self, peer: Peer) -> None:
        first = await peer.call(peer.client.files_upload, b"first", "/a.txt")
        assert (await self.conflict(peer, "/a.txt")).is_file()
        renamed = await peer.call(peer.client.files_upload, b"other", "/a.txt", autorename=True)
        assert renamed.path_display == "/a (1).txt"
        same = await peer.call(peer.client.files_upload, b"first", "/a.txt")
        assert same.rev == first.rev  # identical content is not a conflict...
        strict = {"strict_conflict": True}
        with pytest.raises(ApiError):  # ...unless strict_conflict says so
            await peer.call(peer.client.files_upload, b"first", "/a.txt", **strict)

    async def test_overwrite(self, peer: Peer) -> None:
        first = await peer.call(peer.client.files_upload, b"first", "/a.txt")
        mode = files.WriteMode.overwrite
        second = await peer.call(peer.client.files_upload, b"second", "/a.txt", mode=mode)
        assert second.rev != first.rev
        assert (peer.emulator.root / "a.txt").read_bytes() == b"second"

    async def test_update(self, peer: Peer) -> None:
        first = await peer.call(peer.client.files_upload, b"first", "/a.txt")
        update = files.WriteMode.update(first.rev)
        second = await peer.call(peer.client.files_upload, b"second", "/a.txt", mode=update)
        assert (await self.conflict(peer, "/a.txt", mode=update)).is_file()  # stale rev
        renamed = await peer.call(
            peer.client.files_upload, b"third", "/a.txt", mode=update, autorename=True
        )
        assert renamed.name == "a (1).txt"
        assert (await peer.call(peer.client.files_get_metadata, "/a.txt")).rev == second.rev

    async def test_folder_and_file_ancestor(self, peer: Peer) -> None:
        await peer.call(peer.client.files_upload, b"x", "/dir/inside.txt")
        assert (await self.conflict(peer, "/dir")).is_folder()
        assert (await self.conflict(peer, "/dir/inside.txt/below.txt")).is_file_ancestor()

    async def test_error_shape_on_the_wire(self, peer: Peer) -> None:
        """A 409 carries JSON {error_summary, error} with the tags of the error."""
        await peer.call(peer.client.files_upload, b"x", "/a.txt")
        async with peer.http() as http:
            response = await http.post(
                f"{peer.handle.content_url}/2/files/upload",
                headers={
                    "Authorization": f"Bearer {TOKEN}",
                    "Content-Type": "application/octet-stream",
                    "Dropbox-API-Arg": json.dumps({"path": "/a.txt"}),
                },
                content=b"y",
            )
        assert response.status_code == 409
        body = response.json()
        assert body["error_summary"].startswith("path/conflict/file/")
        assert body["error"]["reason"] == {".tag": "conflict", "conflict": {".tag": "file"}}
        assert body["error"]["upload_session_id"]  # the data is kept as a session


class TestUploadPaths:
    """files/upload bodies up to 1 MiB are handled in memory, larger ones streamed: same results."""

    SIZES = [10 * 1024, (1 << 20) + 1, 3 * (1 << 20) + 5]

    @pytest.mark.parametrize("size", SIZES)
    async def test_stored_whole(self, peer: Peer, size: int) -> None:
        data = bytes(range(256)) * (size // 256) + b"!" * (size % 256)
        uploaded = await peer.call(peer.client.files_upload, data, "/f.bin")
        assert (peer.emulator.root / "f.bin").read_bytes() == data
        assert uploaded.content_hash == content_hash(data)
        assert not list((peer.emulator.root / ".dropbox.cache").iterdir())  # nothing left staged

    @pytest.mark.parametrize("size", SIZES)
    async def test_failed_commit_keeps_a_session(self, peer: Peer, size: int) -> None:
        """A conflicting upload's data is kept as a session that can be finished elsewhere."""
        await peer.call(peer.client.files_upload, b"first", "/taken.bin")
        data = b"s" * size
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_upload, data, "/taken.bin")
        session_id = api_error(excinfo).get_path().upload_session_id
        cursor = files.UploadSessionCursor(session_id, size)
        commit = files.CommitInfo("/elsewhere.bin")
        await peer.call(peer.client.files_upload_session_finish, b"", cursor, commit)
        assert (peer.emulator.root / "elsewhere.bin").read_bytes() == data


def receive_from(pieces: list[bytes]) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI receive callable delivering ``pieces`` as one request body."""
    messages = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


class TestBody:
    """Body.read_small takes a small body whole, and leaves a large one to stream."""

    async def test_small_body_is_read_whole(self) -> None:
        body = Body(receive_from([b"ab", b"cd", b"e"]))
        assert await body.read_small(5) == b"abcde"
        assert await body.next_chunk() is None

    async def test_large_body_streams_from_its_start(self) -> None:
        body = Body(receive_from([b"ab", b"cd", b"ef", b"g"]))
        assert await body.read_small(3) is None
        assert [await body.next_chunk() for _ in range(5)] == [b"ab", b"cd", b"ef", b"g", None]


class TestContentChecks:
    """Content hashes and the upload size limit are enforced."""

    async def test_upload_hash_mismatch(self, peer: Peer) -> None:
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_upload, b"data", "/a.txt", content_hash="0" * 64)
        assert api_error(excinfo).is_content_hash_mismatch()
        assert not (peer.emulator.root / "a.txt").exists()

    async def test_payload_too_large(self, tmp_path: Path) -> None:
        """Over the limit (lowered here from 150 MiB), upload and appends get payload_too_large."""
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, tmp_path, max_upload_size=64 * 1024)
            big = b"x" * (64 * 1024 + 1)
            with pytest.raises(ApiError) as excinfo:
                await peer.call(peer.client.files_upload, big, "/big.bin")
            assert api_error(excinfo).is_payload_too_large()
            start = await peer.call(peer.client.files_upload_session_start, b"ok")
            cursor = files.UploadSessionCursor(start.session_id, 2)
            with pytest.raises(ApiError) as excinfo:
                await peer.call(peer.client.files_upload_session_append_v2, big, cursor)
            assert api_error(excinfo).is_payload_too_large()
            await peer.call(peer.client.files_upload_session_append_v2, b"!", cursor)
            nursery.cancel_scope.cancel()

    @pytest.mark.slow
    async def test_real_limit_without_buffering(self, peer: Peer) -> None:
        """A body of 150 MiB + 1 streamed from a generator is refused; nothing is stored."""
        chunk = b"\0" * (1 << 20)

        async def body() -> AsyncIterator[bytes]:
            for _ in range(150):
                yield chunk
            yield b"!"

        async with peer.http(timeout=60) as http:
            response = await http.post(
                f"{peer.handle.content_url}/2/files/upload",
                headers={
                    "Authorization": f"Bearer {TOKEN}",
                    "Content-Type": "application/octet-stream",
                    "Dropbox-API-Arg": json.dumps({"path": "/huge.bin"}),
                },
                content=body(),
            )
        assert response.status_code == 409
        assert response.json()["error_summary"].startswith("payload_too_large/")
        assert not (peer.emulator.root / "huge.bin").exists()


class TestUploadSessions:
    """start, append_v2 and finish build one file; offsets and close are checked."""

    async def test_session_with_several_appends(self, peer: Peer) -> None:
        parts = [b"a" * 1000, b"b" * 5000, b"c" * 3, b"d" * 70000]
        start = await peer.call(peer.client.files_upload_session_start, parts[0])
        offset = len(parts[0])
        for part in parts[1:-1]:
            cursor = files.UploadSessionCursor(start.session_id, offset)
            await peer.call(peer.client.files_upload_session_append_v2, part, cursor)
            offset += len(part)
        cursor = files.UploadSessionCursor(start.session_id, offset)
        commit = files.CommitInfo("/session/result.bin")
        finished = await peer.call(
            peer.client.files_upload_session_finish, parts[-1], cursor, commit
        )
        whole = b"".join(parts)
        assert finished.size == len(whole)
        assert finished.content_hash == content_hash(whole)
        assert (peer.emulator.root / "session" / "result.bin").read_bytes() == whole
        with pytest.raises(ApiError) as excinfo:  # a finished session is gone
            await peer.call(peer.client.files_upload_session_finish, b"", cursor, commit)
        assert api_error(excinfo).get_lookup_failed().is_not_found()

    async def test_incorrect_offset(self, peer: Peer) -> None:
        start = await peer.call(peer.client.files_upload_session_start, b"12345")
        cursor = files.UploadSessionCursor(start.session_id, 3)
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_upload_session_append_v2, b"678", cursor)
        error = api_error(excinfo)
        assert error.is_incorrect_offset()
        assert error.get_incorrect_offset().correct_offset == 5
        commit = files.CommitInfo("/x.bin")
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_upload_session_finish, b"", cursor, commit)
        assert api_error(excinfo).get_lookup_failed().get_incorrect_offset().correct_offset == 5

    async def test_close_and_hash_mismatch(self, peer: Peer) -> None:
        start = await peer.call(peer.client.files_upload_session_start, b"abc")
        cursor = files.UploadSessionCursor(start.session_id, 3)
        with pytest.raises(ApiError) as excinfo:
            await peer.call(
                peer.client.files_upload_session_append_v2, b"def", cursor, content_hash="0" * 64
            )
        assert api_error(excinfo).is_content_hash_mismatch()
        await peer.call(peer.client.files_upload_session_append_v2, b"def", cursor, close=True)
        closed_cursor = files.UploadSessionCursor(start.session_id, 6)
        with pytest.raises(ApiError) as excinfo:
            await peer.call(peer.client.files_upload_session_append_v2, b"g", closed_cursor)
        assert api_error(excinfo).is_closed()
        commit = files.CommitInfo("/closed.bin")
        done = await peer.call(peer.client.files_upload_session_finish, b"", closed_cursor, commit)
        assert (peer.emulator.root / "closed.bin").read_bytes() == b"abcdef"
        assert done.content_hash == content_hash(b"abcdef")


class TestAuth:
    """Bearer tokens are checked; refresh tokens get expiring tokens from oauth2/token."""

    async def test_wrong_token(self, peer: Peer) -> None:
        client = peer.client_for(token="wrong")
        with pytest.raises(AuthError) as excinfo:
            await peer.call(client.files_list_folder, "")
        assert excinfo.value.error.is_invalid_access_token()

    async def test_refresh_after_expiry(self, tmp_path: Path) -> None:
        async with trio.open_nursery() as nursery:
            peer = await start_peer(
                nursery, tmp_path, apps={"key": "secret"}, refresh_tokens=["refresh-me"]
            )
            client = peer.client_for(refresh_token="refresh-me", app_key="key", app_secret="secret")
            await peer.call(client.files_upload, b"x", "/a.txt")
            peer.emulator.faults.expire_access_tokens()
            await peer.call(client.files_get_metadata, "/a.txt")
            routes = [(r.route, r.status) for r in peer.emulator.requests]
            assert routes == [
                ("oauth2/token", 200),
                ("files/upload", 200),
                ("files/get_metadata", 401),
                ("oauth2/token", 200),
                ("files/get_metadata", 200),
            ]
            nursery.cancel_scope.cancel()

    async def test_bad_refresh_token(self, tmp_path: Path) -> None:
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, tmp_path, apps={"key": "secret"})
            client = peer.client_for(refresh_token="unknown", app_key="key", app_secret="secret")
            with pytest.raises(AuthError):
                await peer.call(client.files_list_folder, "")
            wrong_secret = peer.client_for(refresh_token="x", app_key="key", app_secret="nope")
            with pytest.raises(BadInputError, match="invalid_client"):
                await peer.call(wrong_secret.files_list_folder, "")
            nursery.cancel_scope.cancel()

    async def test_wire_shapes(self, peer: Peer) -> None:
        """401 is JSON with the exact content type the SDK asserts; no token is a 400."""
        async with peer.http() as http:
            url = f"{peer.handle.base_url}/2/files/list_folder"
            response = await http.post(
                url, json={"path": ""}, headers={"Authorization": "Bearer x"}
            )
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {
                "error_summary": "invalid_access_token/...",
                "error": {".tag": "invalid_access_token"},
            }
            response = await http.post(url, json={"path": ""})
            assert response.status_code == 400
            assert response.headers["content-type"].startswith("text/plain")

    async def test_routes_only_on_their_host(self, peer: Peer) -> None:
        """An RPC route sent to the content host is refused, as by the real API."""
        async with peer.http() as http:
            response = await http.post(
                f"{peer.handle.content_url}/2/files/list_folder",
                json={"path": ""},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        assert response.status_code == 400
        assert "api host" in response.text


class TestFaults:
    """Injected faults reach the SDK as real failures, which it retries."""

    async def test_429_burst_is_retried(self, peer: Peer) -> None:
        peer.emulator.faults.fail_next(3, 429, retry_after=0, route="files/list_folder")
        await peer.call(peer.client.files_list_folder, "")
        statuses = [r.status for r in peer.emulator.requests]
        assert statuses == [429, 429, 429, 200]

    async def test_429_wire_shape(self, peer: Peer) -> None:
        peer.emulator.faults.fail_next(1, 429, retry_after=7)
        async with peer.http() as http:
            response = await http.post(f"{peer.handle.base_url}/2/files/list_folder", json={})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        assert response.json()["error"] == {
            "reason": {".tag": "too_many_requests"},
            "retry_after": 7,
        }

    async def test_5xx_burst_is_retried(self, peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
        without_backoff(monkeypatch)
        peer.emulator.faults.fail_next(2, 503)
        peer.emulator.faults.fail_next(1, 500)
        await peer.call(peer.client.files_upload, b"x", "/a.txt")
        assert [r.status for r in peer.emulator.requests] == [503, 503, 500, 200]
        assert (peer.emulator.root / "a.txt").read_bytes() == b"x"

    async def test_dropped_connection_is_retried(self, peer: Peer) -> None:
        peer.emulator.faults.drop_next(2, route="files/upload")
        await peer.call(peer.client.files_upload, b"x", "/a.txt")
        assert [r.status for r in peer.emulator.requests] == [None, None, 200]

    async def test_delay(self, peer: Peer) -> None:
        peer.emulator.faults.delay(0.3, route="files/get_metadata")
        await peer.call(peer.client.files_upload, b"x", "/a.txt")
        started = trio.current_time()
        await peer.call(peer.client.files_get_metadata, "/a.txt")
        assert trio.current_time() - started >= 0.3

    async def test_fail_ratio(self, peer: Peer) -> None:
        """With a seeded ratio, some requests fail and every call still succeeds after retries."""
        peer.emulator.faults.fail_ratio(0.3, statuses=(429,), retry_after=0, seed=7)
        client = peer.client_for(token=TOKEN, max_retries_on_rate_limit=None)
        for index in range(20):
            await peer.call(client.files_upload, b"%d" % index, f"/soak/{index}.txt")
        statuses = [r.status for r in peer.emulator.requests]
        assert statuses.count(200) == 20
        assert statuses.count(429) > 0
        peer.emulator.faults.clear()

    async def test_user_agent_is_recorded(self, peer: Peer) -> None:
        await peer.call(peer.client.files_list_folder, "")
        (request,) = peer.emulator.requests
        assert request.route == "files/list_folder"
        assert request.user_agent.startswith(USER_AGENT + "/OfficialDropboxPythonSDKv2/")
        assert peer.emulator.requests.maxlen is not None
