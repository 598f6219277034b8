"""Hot deploy against a real daemon and a real services directory on disk."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from support import file_state, until

from daemon import Config, Daemon, ServiceNotFound, main

WriteService = Callable[[str, str], Path]

HELLO = """
    from daemon import Service

    class Hello(Service):
        name = "hello"
        async def handle(self):
            self.response.payload = {VALUE!r}
"""


def hello(value: str) -> str:
    return textwrap.dedent(HELLO).replace("{VALUE!r}", repr(value))


async def deployed_value(daemon: Daemon) -> object:
    return await daemon.router.invoke("hello")


class TestDeploy:
    async def test_file_present_at_start_is_deployed_before_ready(
        self, config: Config, write_service: WriteService
    ) -> None:
        """main reports ready only after the files already there are deployed."""
        write_service("hello.py", hello("v1"))
        async with trio.open_nursery() as nursery:
            daemon = await nursery.start(main, config)
            assert await daemon.router.invoke("hello") == "v1"
            daemon.stop()

    async def test_new_file_is_deployed(self, daemon: Daemon, write_service: WriteService) -> None:
        """A file dropped into a running daemon's directory starts serving."""
        write_service("hello.py", hello("new"))
        await until(daemon, lambda: "hello" in daemon.router)
        assert await deployed_value(daemon) == "new"
        state = file_state(daemon, "hello.py")
        assert state is not None and state.status == "deployed" and state.services == ("hello",)

    async def test_changed_file_serves_new_code(
        self, daemon: Daemon, write_service: WriteService
    ) -> None:
        """Replacing a file's content makes the next invoke run the new code."""
        write_service("hello.py", hello("v1"))
        await until(daemon, lambda: "hello" in daemon.router)
        before = file_state(daemon, "hello.py")
        write_service("hello.py", hello("v2"))
        await until(daemon, lambda: file_state(daemon, "hello.py") is not before)
        assert await deployed_value(daemon) == "v2"

    async def test_in_place_write_of_same_size_is_seen(
        self, daemon: Daemon, services_dir: Path, write_service: WriteService
    ) -> None:
        """An editor rewriting a file in place, same size, same second, still redeploys it."""
        path = write_service("hello.py", hello("v1"))
        await until(daemon, lambda: "hello" in daemon.router)
        before = file_state(daemon, "hello.py")
        path.write_text(path.read_text().replace("v1", "v2"))
        await until(daemon, lambda: file_state(daemon, "hello.py") is not before)
        assert await deployed_value(daemon) == "v2"


async def claim_hello_twice(daemon: Daemon, write_service: WriteService) -> None:
    """hello.py deploys service "hello"; then second.py claims the same name."""
    write_service("hello.py", hello("first"))
    await until(daemon, lambda: "hello" in daemon.router)
    write_service("second.py", hello("second"))
    await until(daemon, lambda: file_state(daemon, "second.py"))


class TestFailures:
    @pytest.mark.parametrize(
        ("broken", "expected"),
        [
            ("def handle(self:\n", "SyntaxError"),
            ("import no_such_module_here\n", "ModuleNotFoundError"),
            ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ],
        ids=["syntax-error", "import-error", "exception-at-import"],
    )
    async def test_old_version_keeps_serving(
        self, daemon: Daemon, write_service: WriteService, broken: str, expected: str
    ) -> None:
        """A broken new version is refused with its traceback; the old one keeps answering."""
        write_service("hello.py", hello("good"))
        await until(daemon, lambda: "hello" in daemon.router)
        write_service("hello.py", hello("bad") + broken)
        await until(daemon, lambda: file_state(daemon, "hello.py").status == "failed")  # type: ignore[union-attr]
        state = file_state(daemon, "hello.py")
        assert state is not None
        assert expected in (state.traceback or "")
        assert "hello.py" in (state.error or "")
        assert state.services == ("hello",)
        assert await deployed_value(daemon) == "good"

    async def test_duplicate_name_across_files_is_refused(
        self, daemon: Daemon, write_service: WriteService
    ) -> None:
        """A second file claiming a deployed name fails; the first keeps the name."""
        await claim_hello_twice(daemon, write_service)
        state = file_state(daemon, "second.py")
        assert state is not None and state.status == "failed"
        assert "'hello' is already deployed from hello.py" in (state.error or "")
        assert await deployed_value(daemon) == "first"

    async def test_duplicate_is_deployed_once_the_name_is_free(
        self, daemon: Daemon, services_dir: Path, write_service: WriteService
    ) -> None:
        """When the file holding a name goes, the file refused for that name takes it."""
        await claim_hello_twice(daemon, write_service)
        (services_dir / "hello.py").unlink()
        await until(daemon, lambda: file_state(daemon, "second.py").status == "deployed")  # type: ignore[union-attr]
        assert await deployed_value(daemon) == "second"

    async def test_duplicate_is_deployed_once_its_owner_renames_the_service(
        self, daemon: Daemon, write_service: WriteService
    ) -> None:
        """When the file holding a name redeploys without it, the file refused for it takes it."""
        await claim_hello_twice(daemon, write_service)
        write_service("hello.py", hello("first").replace('"hello"', '"renamed"'))
        await until(daemon, lambda: file_state(daemon, "second.py").status == "deployed")  # type: ignore[union-attr]
        assert await deployed_value(daemon) == "second"
        assert await daemon.router.invoke("renamed") == "first"

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            (
                "from daemon import Service\nclass Nameless(Service):\n"
                "    async def handle(self): pass\n",
                "class Nameless has no name",
            ),
            (
                "from daemon import Service\nclass A(Service):\n    name = 'x'\n"
                "    async def handle(self): pass\nclass B(A):\n    name = 'x'\n",
                "'x' is defined twice",
            ),
            (
                "from daemon import Service\nclass A(Service):\n    name = 'no_handle'\n",
                "defines no handle",
            ),
            (
                "from daemon import Service\nclass A(Service):\n    name = 'a name'\n"
                "    async def handle(self): pass\n",
                "name must be 1-200 letters",
            ),
        ],
        ids=["no-name", "same-name-twice", "no-handle", "bad-name"],
    )
    async def test_invalid_service_classes(
        self, daemon: Daemon, write_service: WriteService, source: str, expected: str
    ) -> None:
        """Classes that cannot be deployed are reported, naming the rule they break."""
        write_service("bad.py", source)
        await until(daemon, lambda: file_state(daemon, "bad.py"))
        state = file_state(daemon, "bad.py")
        assert state is not None and state.status == "failed"
        assert expected in (state.error or "")

    async def test_file_shadowing_an_installed_module_is_refused(
        self, daemon: Daemon, write_service: WriteService
    ) -> None:
        """services/json.py must not replace the standard library's json for the whole process."""
        write_service("json.py", hello("shadow"))
        await until(daemon, lambda: file_state(daemon, "json.py"))
        state = file_state(daemon, "json.py")
        assert state is not None and state.status == "failed"
        assert "shadow the installed module 'json'" in (state.error or "")
        import json

        assert hasattr(json, "dumps")


class TestUndeploy:
    async def test_deleted_file_is_undeployed(
        self, daemon: Daemon, write_service: WriteService
    ) -> None:
        """Deleting a file removes its services and its deploy record."""
        path = write_service("hello.py", hello("v1"))
        await until(daemon, lambda: "hello" in daemon.router)
        path.unlink()
        await until(daemon, lambda: "hello" not in daemon.router)
        assert file_state(daemon, "hello.py") is None
        with pytest.raises(ServiceNotFound, match="'hello'"):
            await daemon.router.invoke("hello")

    async def test_class_removed_from_file_is_undeployed(
        self, daemon: Daemon, write_service: WriteService
    ) -> None:
        """A class dropped from a file goes; the file's other services stay."""
        two = hello("one") + (
            "\nclass Other(Service):\n    name = 'other'\n"
            "    async def handle(self):\n        self.response.payload = 'other'\n"
        )
        write_service("hello.py", two)
        await until(daemon, lambda: "other" in daemon.router)
        write_service("hello.py", hello("one"))
        await until(daemon, lambda: "other" not in daemon.router)
        assert await deployed_value(daemon) == "one"


class TestHelperModules:
    async def test_helper_change_redeploys_dependents(
        self, daemon: Daemon, write_service: WriteService
    ) -> None:
        """Changing a helper module imported by a service file redeploys that file."""
        write_service("greeting.py", "TEXT = 'hello v1'\n")
        write_service(
            "user.py",
            """
            import greeting
            from daemon import Service

            class UsesHelper(Service):
                name = "uses.helper"
                async def handle(self):
                    self.response.payload = greeting.TEXT
            """,
        )
        await until(daemon, lambda: "uses.helper" in daemon.router)
        assert await daemon.router.invoke("uses.helper") == "hello v1"
        before = file_state(daemon, "user.py")
        write_service("greeting.py", "TEXT = 'hello v2'\n")
        await until(daemon, lambda: file_state(daemon, "user.py") is not before)
        assert await daemon.router.invoke("uses.helper") == "hello v2"

    async def test_files_load_after_the_helpers_they_import(
        self, config: Config, write_service: WriteService
    ) -> None:
        """At start, a file importing a helper loads after it, whatever their names."""
        write_service("zz_helper.py", "VALUE = 42\n")
        write_service(
            "aa_user.py",
            "from zz_helper import VALUE\nfrom daemon import Service\n"
            "class S(Service):\n    name = 's'\n"
            "    async def handle(self):\n        self.response.payload = VALUE\n",
        )
        async with trio.open_nursery() as nursery:
            daemon = await nursery.start(main, config)
            assert await daemon.router.invoke("s") == 42
            daemon.stop()

    async def test_every_file_of_every_import_cycle_is_refused(
        self, config: Config, write_service: WriteService
    ) -> None:
        """Two separate import cycles: all four files fail, the file outside them deploys."""
        for stem, other in (("cyc_a", "cyc_b"), ("cyc_b", "cyc_a"), ("cyc_c", "cyc_d")):
            write_service(f"{stem}.py", f"import {other}\n")
        write_service("cyc_d.py", "import cyc_c\n")
        write_service("outside.py", hello("outside"))
        async with trio.open_nursery() as nursery:
            daemon = await nursery.start(main, config)
            for name in ("cyc_a.py", "cyc_b.py", "cyc_c.py", "cyc_d.py"):
                state = file_state(daemon, name)
                assert state is not None and state.status == "failed", name
                assert "import cycle" in (state.error or "")
            assert await deployed_value(daemon) == "outside"
            daemon.stop()


class TestIgnoredFiles:
    async def test_editor_and_hidden_files_are_ignored(
        self, daemon: Daemon, services_dir: Path, write_service: WriteService
    ) -> None:
        """Temp, backup, hidden and non-.py files are never deployed."""
        for name in (".#hello.py", ".hidden.py", "hello.py~", "#hello.py#", "notes.txt"):
            (services_dir / name).write_text(hello("ignored"))
        write_service("marker.py", "X = 1\n")
        await until(daemon, lambda: file_state(daemon, "marker.py"))
        assert [s.path.name for s in daemon.deployer.states()] == ["marker.py"]
        assert "hello" not in daemon.router


class TestRedeployUnderLoad:
    async def test_running_request_finishes_on_old_code(
        self, daemon: Daemon, write_service: WriteService
    ) -> None:
        """A request running during a redeploy finishes on the old code; the next gets the new."""
        slow = """
            from daemon import Service

            class Slow(Service):
                name = "slow"
                async def handle(self):
                    await self.request.payload.wait()  # the test's trio.Event
                    self.response.payload = VERSION
        """
        write_service("slow.py", slow.replace("VERSION", "'old'"))
        await until(daemon, lambda: "slow" in daemon.router)
        release = trio.Event()
        results: dict[str, object] = {}

        async def call(key: str) -> None:
            results[key] = await daemon.router.invoke("slow", release)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "before")
            await trio.testing.wait_all_tasks_blocked()
            before = file_state(daemon, "slow.py")
            write_service("slow.py", slow.replace("VERSION", "'new'"))
            await until(daemon, lambda: file_state(daemon, "slow.py") is not before)
            nursery.start_soon(call, "after")
            release.set()
        assert results == {"before": "old", "after": "new"}


class TestRestart:
    async def test_change_while_down_is_picked_up_at_start(
        self, config: Config, write_service: WriteService, services_dir: Path
    ) -> None:
        """Files changed or deleted while the daemon was down are in effect at the next start."""
        write_service("hello.py", hello("before"))
        write_service("gone.py", hello("x").replace('"hello"', '"gone"'))
        async with trio.open_nursery() as nursery:
            daemon = await nursery.start(main, config)
            assert await daemon.router.invoke("hello") == "before"
            daemon.stop()
        write_service("hello.py", hello("after"))
        os.unlink(services_dir / "gone.py")
        async with trio.open_nursery() as nursery:
            daemon = await nursery.start(main, config)
            assert await daemon.router.invoke("hello") == "after"
            assert "gone" not in daemon.router
            daemon.stop()


class TestZatoImportPath:
    async def test_zato_style_service_deploys(
        self, daemon: Daemon, write_service: WriteService
    ) -> None:
        """`from zato.server.service import Service` works without Zato installed."""
        write_service(
            "zato_style.py",
            """
            from zato.server.service import Service

            class Legacy(Service):
                name = "legacy"
                def handle(self):
                    self.response.payload = {"ok": True}
            """,
        )
        await until(daemon, lambda: "legacy" in daemon.router)
        assert await daemon.router.invoke("legacy") == {"ok": True}
