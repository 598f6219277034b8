"""The Dropbox SDK's back-off before retrying a 5xx answer, made instant for one test."""

from __future__ import annotations

import pytest
from dropbox import dropbox_client


def without_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the SDK's ``2**n * random()`` second waits zero until the test ends.

    Only the SDK module's name ``random`` is swapped: the stdlib's
    ``random.random`` stays as it is for everything else in the process.
    """
    monkeypatch.setattr(dropbox_client, "random", _NoJitter())


class _NoJitter:
    @staticmethod
    def random() -> float:
        return 0.0
