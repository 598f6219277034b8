"""Fault injection and the request record of the Dropbox emulator, for tests and soak runs."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: How many requests ``DropboxEmulator.requests`` keeps (oldest dropped first).
REQUEST_RECORD_SIZE = 10_000


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator answered: its route (``files/upload``,
    ``oauth2/token``), the client's User-Agent, the status sent (None when
    the connection was dropped without a response), and for content routes
    the Dropbox path from the ``Dropbox-API-Arg`` header (a session finish's
    commit path), so tests can count what was committed where."""

    route: str
    user_agent: str
    status: int | None
    path: str | None = None


@dataclass(frozen=True)
class Failure:
    """What a fault makes of one request: an error status, or a dropped connection."""

    status: int | None  # None: drop the connection
    retry_after: int | None = None


@dataclass
class _Planned:
    remaining: int
    failure: Failure
    route: str | None


class Faults:
    """Faults the emulator injects into the requests it receives.

    ``route`` arguments name a route as recorded (``"files/upload"``); None
    means any route. Faults planned with ``fail_next``/``drop_next`` apply in
    the order they were planned, before any ``fail_ratio``.
    """

    def __init__(self, expire_access_tokens: Callable[[], None]) -> None:
        self._expire = expire_access_tokens
        self._planned: deque[_Planned] = deque()
        self._delays: dict[str | None, float] = {}
        self._ratio = 0.0
        self._ratio_statuses: tuple[int, ...] = ()
        self._ratio_retry_after = 1
        self._rng = random.Random()

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        retry_after: int | None = None,
        route: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status``.

        A 429 carries the real ``too_many_requests`` body and a Retry-After of
        ``retry_after`` seconds (1 if None); other statuses carry Retry-After
        only when ``retry_after`` is given.
        """
        _check_count(count)
        if status == 429 and retry_after is None:
            retry_after = 1
        self._planned.append(_Planned(count, Failure(status, retry_after), route))

    def drop_next(self, count: int, *, route: str | None = None) -> None:
        """Close the connection of the next ``count`` requests without answering them.

        The request body is read first, so the client sees the connection
        closed while it waits for the response.
        """
        _check_count(count)
        self._planned.append(_Planned(count, Failure(None), route))

    def fail_ratio(
        self,
        ratio: float,
        statuses: Iterable[int] = (500, 503, 429),
        *,
        retry_after: int = 1,
        seed: int | None = None,
    ) -> None:
        """Fail a fraction ``ratio`` (0 to 1) of requests with a status drawn from ``statuses``."""
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be between 0 and 1, got {ratio!r}")
        self._ratio = ratio
        self._ratio_statuses = tuple(statuses)
        self._ratio_retry_after = retry_after
        self._rng = random.Random(seed)

    def delay(self, seconds: float, *, route: str | None = None) -> None:
        """Hold every request (of ``route``) for ``seconds`` before handling it; 0 removes it."""
        if seconds > 0:
            self._delays[route] = seconds
        else:
            self._delays.pop(route, None)

    def expire_access_tokens(self) -> None:
        """Expire every token issued so far: its next use gets 401 ``expired_access_token``."""
        self._expire()

    def clear(self) -> None:
        """Remove every planned fault, ratio and delay."""
        self._planned.clear()
        self._delays.clear()
        self._ratio = 0.0

    def delay_for(self, route: str) -> float:
        """Return how long to hold a request of ``route``."""
        return self._delays.get(route, self._delays.get(None, 0.0))

    def take(self, route: str) -> Failure | None:
        """Return the failure to inject into this request of ``route``, if any."""
        for planned in self._planned:
            if planned.route in (None, route):
                planned.remaining -= 1
                if planned.remaining <= 0:
                    self._planned.remove(planned)
                return planned.failure
        if self._ratio and self._rng.random() < self._ratio:
            status = self._rng.choice(self._ratio_statuses)
            return Failure(status, self._ratio_retry_after if status == 429 else None)
        return None


def _check_count(count: int) -> None:
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count!r}")
