"""Matching request paths to REST channels.

Paths without parameters are looked up in a dict; paths with ``{param}``
segments are tried in configuration order as regular expressions. A path
that matches with a method no channel allows is a 405 with ``Allow``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .._config import RestChannel

__all__ = ["Match", "RouteTable"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Match:
    """The channel for a request, or the methods allowed there (for 405)."""

    channel: RestChannel | None
    params: dict[str, str]
    allowed: tuple[str, ...] = ()


class RouteTable:
    """An immutable routing table built from the configured channels."""

    def __init__(self, channels: Iterable[RestChannel]) -> None:
        self.channels = tuple(channels)
        self._static: dict[str, list[RestChannel]] = {}
        self._patterns: list[tuple[re.Pattern[str], RestChannel]] = []
        for channel in self.channels:
            if _PARAM.search(channel.path):
                self._patterns.append((_compile(channel.path), channel))
            else:
                self._static.setdefault(channel.path.rstrip("/") or "/", []).append(channel)

    def match(self, method: str, path: str) -> Match | None:
        """The channel serving ``method path``; a Match without channel means 405; None, 404."""
        static = self._static.get(path.rstrip("/") or "/", ())
        for channel in static:  # the usual case, before any regular expression
            if method in channel.methods:
                return Match(channel, {})
        candidates: list[tuple[RestChannel, dict[str, str]]] = [
            (c, {}) for c in self._static.get(path.rstrip("/") or "/", ())
        ]
        for pattern, channel in self._patterns:
            found = pattern.fullmatch(path)
            if found:
                candidates.append((channel, found.groupdict()))
        if not candidates:
            return None
        for channel, params in candidates:
            if method in channel.methods or (method == "HEAD" and "GET" in channel.methods):
                return Match(channel, params)
        allowed = sorted({m for channel, _ in candidates for m in channel.methods})
        return Match(None, {}, tuple(allowed))


def _compile(path: str) -> re.Pattern[str]:
    parts = _PARAM.split(path.rstrip("/"))
    # split() alternates literal text and parameter names.
    regex = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(regex + "/?")
