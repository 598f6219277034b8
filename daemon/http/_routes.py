"""Matching request paths to REST channels.

Paths without parameters are looked up in a dict; paths with ``{param}``
segments are tried in configuration order as regular expressions. A path
that matches with a method no channel allows is a 405 with ``Allow``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .._config import RestChannel

__all__ = ["Match", "RouteTable"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Match:
    """The channel for a request, or the methods allowed there (for 405)."""

    channel: RestChannel | None
    params: Mapping[str, str]
    allowed: tuple[str, ...] = ()


#: The parameters of every static match: shared, so read-only.
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


class RouteTable:
    """An immutable routing table built from the configured channels."""

    def __init__(self, channels: Iterable[RestChannel]) -> None:
        self.channels = tuple(channels)
        self._static: dict[str, list[RestChannel]] = {}
        # The usual case, answered by one lookup: (method, path) of a channel without parameters.
        self._exact: dict[tuple[str, str], Match] = {}
        self._patterns: list[tuple[re.Pattern[str], RestChannel]] = []
        for channel in self.channels:
            if _PARAM.search(channel.path):
                self._patterns.append((_compile(channel.path), channel))
            else:
                path = channel.path.rstrip("/") or "/"
                self._static.setdefault(path, []).append(channel)
                for method in channel.methods:
                    self._exact.setdefault((method, path), Match(channel, _NO_PARAMS))

    def match(self, method: str, path: str) -> Match | None:
        """The channel serving ``method path``; a Match without channel means 405; None, 404."""
        static_path = path.rstrip("/") or "/"
        exact = self._exact.get((method, static_path))
        if exact is not None:
            return exact
        candidates: list[tuple[RestChannel, Mapping[str, str]]] = [
            (c, _NO_PARAMS) for c in self._static.get(static_path, ())
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
        return Match(None, _NO_PARAMS, tuple(allowed))


def _compile(path: str) -> re.Pattern[str]:
    parts = _PARAM.split(path.rstrip("/"))
    # split() alternates literal text and parameter names.
    regex = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(regex + "/?")
