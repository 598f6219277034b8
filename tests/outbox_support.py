"""What the outbox tests share: a fake delivery target, the states, a directory listing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from daemon.outbox import Message, MessageState

PENDING, DELIVERING, DELIVERED, DEAD = MessageState
NO_MESSAGES = dict.fromkeys(MessageState, 0)


def files(directory: Path) -> list[str]:
    """The names in ``directory``, sorted."""
    return sorted(path.name for path in directory.iterdir())


class Target:
    """The far side of a delivery: records each call, fails or waits on demand.

    ``failures`` fails each message's first attempts; ``broken`` fails all;
    with a ``gate``, each delivery waits until it is set (never, to hang).
    ``calls`` holds every attempt with the body it read, ``bodies`` the body
    of each message delivered.
    """

    def __init__(
        self, *, failures: int = 0, broken: bool = False, gate: trio.Event | None = None
    ) -> None:
        self.failures = failures
        self.broken = broken
        self.gate = gate
        self.calls: list[tuple[Message, bytes | None, float]] = []
        self.delivered: Counter[str] = Counter()
        self.bodies: dict[str, bytes | None] = {}
        self.active: Counter[str] = Counter()
        self.most_active: Counter[str] = Counter()
        self.most_active_overall = 0
        self._changed = trio.Event()

    async def __call__(self, message: Message, body: Path | None) -> None:
        data = None if body is None else await trio.Path(body).read_bytes()
        self.calls.append((message, data, trio.current_time()))
        self._change()
        self.active[message.target] += 1
        self.most_active[message.target] = max(
            self.most_active[message.target], self.active[message.target]
        )
        self.most_active_overall = max(self.most_active_overall, self.active.total())
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.broken or message.attempts <= self.failures:
                raise ConnectionRefusedError(f"attempt {message.attempts} refused")
        finally:
            self.active[message.target] -= 1
        self.bodies[message.id] = data
        self.delivered[message.id] += 1
        self._change()

    def _change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_calls(self, count: int) -> None:
        """Return once ``count`` attempts have started."""
        while len(self.calls) < count:
            await self._changed.wait()

    async def wait_delivered(self, count: int) -> None:
        """Return once ``count`` deliveries have succeeded."""
        while self.delivered.total() < count:
            await self._changed.wait()
