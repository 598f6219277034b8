"""What a service sees of an HTTP request: ``self.request.http``."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._service import Bunch
from ._body import RequestBody

__all__ = ["Headers", "HttpRequest"]


class Headers(Mapping[str, str]):
    """Request headers with case-insensitive names; repeated headers are joined by ", ".

    Decoded on first use: the gateway reads the two or three headers it needs
    with `value`, and most services never look at the rest.
    """

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]] | list[list[bytes]]) -> None:
        self._raw = raw
        self._decoded: dict[str, str] | None = None

    def value(self, name: bytes) -> str | None:
        """Header ``name`` (lower-case, as ASGI gives names), without decoding the others."""
        if self._decoded is not None:
            return self._decoded.get(name.decode("latin-1"))
        found: str | None = None
        for key, value in self._raw:
            if key == name:
                text = value.decode("latin-1")
                found = text if found is None else f"{found}, {text}"
        return found

    @property
    def _items(self) -> dict[str, str]:
        if self._decoded is None:
            items: dict[str, str] = {}
            for name, value in self._raw:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                items[key] = f"{items[key]}, {text}" if key in items else text
            self._decoded = items
        return self._decoded

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items


@dataclass
class HttpRequest:
    """One REST channel request.

    ``params`` holds the query parameters and the path parameters (path
    parameters win), with attribute and item access as in Zato:
    ``self.request.http.params.file_name``.
    """

    method: str
    path: str
    headers: Headers
    body: RequestBody
    path_params: Mapping[str, str]
    query: Mapping[str, str]

    @functools.cached_property
    def params(self) -> Bunch:
        return Bunch({**self.query, **self.path_params})

    def snapshot(self, *, drop_headers: frozenset[str]) -> dict[str, Any]:
        """What a durable message keeps of this request, as JSON, less ``drop_headers``."""
        return {
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "path_params": dict(self.path_params),
            "headers": {k: v for k, v in self.headers.items() if k not in drop_headers},
        }

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any], body: RequestBody) -> HttpRequest:
        """The request again, from `snapshot`'s output and the body the outbox kept."""
        query, path_params = snapshot["query"], snapshot["path_params"]
        return cls(
            method=snapshot["method"],
            path=snapshot["path"],
            headers=Headers(
                [(k.encode("latin-1"), v.encode("latin-1")) for k, v in snapshot["headers"].items()]
            ),
            body=body,
            path_params=path_params,
            query=query,
        )

    def input_fields(self, payload: Any) -> dict[str, Any]:
        """Where SimpleIO input comes from: query, then the body's fields, then path parameters."""
        fields: dict[str, Any] = dict(self.query)
        if payload is not None and isinstance(payload, Mapping):
            fields.update(payload)
        fields.update(self.path_params)
        return fields
