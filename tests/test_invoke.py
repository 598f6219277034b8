"""Invoking services through the router: sync and async, errors, timeouts, back pressure."""

from __future__ import annotations

import pytest
import structlog
import trio
import trio.lowlevel

from daemon import (
    InvalidInput,
    InvalidOutput,
    InvokeTimeout,
    Service,
    ServiceNotFound,
)
from daemon.testing import service_harness


class AsyncTop(Service):
    name = "chain.async.top"

    async def handle(self) -> None:
        self.logger.info("chain_step", step="async-top")
        self.response.payload = ["async-top", *await self.invoke("chain.sync.middle", {})]


class SyncMiddle(Service):
    name = "chain.sync.middle"

    def handle(self) -> None:
        self.logger.info("chain_step", step="sync-middle")
        self.response.payload = ["sync-middle", *self.invoke("chain.async.bottom")]


class AsyncBottom(Service):
    name = "chain.async.bottom"

    async def handle(self) -> None:
        self.logger.info("chain_step", step="async-bottom")
        self.response.payload = ["async-bottom", self.cid]


class SyncTop(Service):
    name = "chain.sync.top"

    def handle(self) -> None:
        self.logger.info("chain_step", step="sync-top")
        self.response.payload = ["sync-top", *self.invoke("chain.async.middle")]


class AsyncMiddle(Service):
    name = "chain.async.middle"

    async def handle(self) -> None:
        self.logger.info("chain_step", step="async-middle")
        self.response.payload = ["async-middle", *await self.invoke("chain.sync.bottom")]


class SyncBottom(Service):
    name = "chain.sync.bottom"

    def handle(self) -> None:
        self.logger.info("chain_step", step="sync-bottom")
        self.response.payload = ["sync-bottom", self.cid]


CHAIN = [AsyncTop, SyncMiddle, AsyncBottom, SyncTop, AsyncMiddle, SyncBottom]


class TestNestedInvokes:
    @pytest.mark.parametrize(
        ("top", "steps"),
        [
            ("chain.async.top", ["async-top", "sync-middle", "async-bottom"]),
            ("chain.sync.top", ["sync-top", "async-middle", "sync-bottom"]),
        ],
    )
    async def test_three_deep_keeps_one_cid(self, top: str, steps: list[str]) -> None:
        """Sync and async services invoke each other both ways; all log lines carry one cid."""
        async with service_harness(CHAIN) as router:
            with structlog.testing.capture_logs() as logs:
                result = await router.invoke(top, cid="cid-under-test")
        assert result == [*steps, "cid-under-test"]
        lines = [line for line in logs if line["event"] == "chain_step"]
        assert [line["step"] for line in lines] == steps
        assert {line["cid"] for line in lines} == {"cid-under-test"}


class Raises(Service):
    name = "raises"

    async def handle(self) -> None:
        if self.request.payload == "fail":
            raise ValueError("the service's own error")
        self.response.payload = "fine"


class SyncRaises(Service):
    name = "sync.raises"

    def handle(self) -> None:
        raise KeyError("from a thread")


class Sleeper(Service):
    name = "sleeper"
    cancelled = trio.Event()

    async def handle(self) -> None:
        try:
            await trio.sleep(self.request.payload)
        except trio.Cancelled:
            type(self).cancelled.set()
            raise
        self.response.payload = "woke"


class Needs(Service):
    name = "needs"

    class SimpleIO:
        input_required = ("file_name", "data")
        input_optional = ("mode",)
        output_required = ("size",)

    async def handle(self) -> None:
        if self.request.input.mode == "forget-output":
            return
        self.response.payload = {"size": len(self.request.input.data)}


class TestErrors:
    async def test_raising_service_fails_one_message_only(self) -> None:
        """The caller gets the service's exception; the actor serves the next message."""
        async with service_harness([Raises, SyncRaises]) as router:
            with pytest.raises(ValueError, match="the service's own error"):
                await router.invoke("raises", "fail")
            assert await router.invoke("raises", "ok") == "fine"
            with pytest.raises(KeyError, match="from a thread"):
                await router.invoke("sync.raises")
            with pytest.raises(KeyError):
                await router.invoke("sync.raises")
            assert router.stats("raises").errors == 1
            assert router.stats("sync.raises").errors == 2

    async def test_timeout_raises_and_cancels_the_work(self) -> None:
        """A timed-out invoke raises InvokeTimeout naming the service; the target is cancelled."""
        Sleeper.cancelled = trio.Event()
        async with service_harness([Sleeper]) as router:
            with pytest.raises(InvokeTimeout, match=r"'sleeper' did not answer within 0.05 s"):
                await router.invoke("sleeper", 30, timeout=0.05)
            with trio.fail_after(5):
                await Sleeper.cancelled.wait()
            assert await router.invoke("sleeper", 0, timeout=5) == "woke"

    async def test_unknown_name(self) -> None:
        """Invoking a name nobody deployed raises ServiceNotFound naming it."""
        async with service_harness([Raises]) as router:
            with pytest.raises(ServiceNotFound, match="no service named 'nope' is deployed"):
                await router.invoke("nope")
            assert await router.invoke("raises") == "fine"

    async def test_missing_simpleio_input(self) -> None:
        """Missing required input raises InvalidInput listing exactly the missing fields."""
        async with service_harness([Needs]) as router:
            with pytest.raises(InvalidInput, match="missing required input: data") as info:
                await router.invoke("needs", {"file_name": "a"})
            assert info.value.missing == ("data",)
            with pytest.raises(InvalidInput, match="expected an object"):
                await router.invoke("needs", b"raw bytes")
            assert await router.invoke("needs", {"file_name": "a", "data": "xyz"}) == {"size": 3}

    async def test_missing_required_output(self) -> None:
        """A service that omits declared required output fails with a message naming the field."""
        async with service_harness([Needs]) as router:
            with pytest.raises(InvalidOutput, match="returned no size"):
                await router.invoke(
                    "needs", {"file_name": "a", "data": "", "mode": "forget-output"}
                )


class Gate(Service):
    name = "gate"
    concurrency = 4
    mailbox = 100
    running = 0
    peak = 0

    async def handle(self) -> None:
        cls = type(self)
        cls.running += 1
        cls.peak = max(cls.peak, cls.running)
        await trio.lowlevel.checkpoint()
        cls.running -= 1
        self.response.payload = self.request.payload


class TestBackPressure:
    async def test_ten_thousand_concurrent_invokes(self) -> None:
        """10,000 callers at once: all answered, never more than 4 running or 100 queued."""
        peak_queued = 0
        results: list[int] = []
        async with service_harness([Gate]) as router:
            actor = router.get("gate")

            async def call(n: int) -> None:
                nonlocal peak_queued
                results.append(await router.invoke("gate", n))
                peak_queued = max(peak_queued, actor.queued)

            async with trio.open_nursery() as nursery:
                for n in range(10_000):
                    nursery.start_soon(call, n)
        assert sorted(results) == list(range(10_000))
        assert Gate.peak == 4
        assert 0 < peak_queued <= 100


class Turnstile(Service):
    name = "turnstile"
    concurrency = 1
    release = trio.Event()
    order: list[int] = []

    async def handle(self) -> None:
        if self.request.payload == 0:
            await type(self).release.wait()
        type(self).order.append(self.request.payload)


class TestInlineRuns:
    async def test_waiting_messages_are_not_overtaken(self) -> None:
        """An idle service runs a caller inline; while messages wait, callers queue in order."""
        Turnstile.release = trio.Event()
        Turnstile.order = []
        async with service_harness([Turnstile]) as router, trio.open_nursery() as nursery:
            nursery.start_soon(router.invoke, "turnstile", 0)  # runs inline, holds the slot
            await trio.testing.wait_all_tasks_blocked()
            for n in range(1, 6):
                nursery.start_soon(router.invoke, "turnstile", n)
                await trio.testing.wait_all_tasks_blocked()
            # Nobody ran inline: the first waiter sits in a worker's hands,
            # waiting for the slot; the others in the mailbox.
            assert router.get("turnstile").queued == 4
            Turnstile.release.set()
        assert Turnstile.order == [0, 1, 2, 3, 4, 5]
