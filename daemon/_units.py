"""Human units in configuration: durations (``"30s"``) and sizes (``"2GiB"``)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_BYTES = {
    None: 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip


def parse_duration(value: str | int | float) -> float:
    """Return seconds for ``"250ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` or a number.

    Raises ValueError naming the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '30s', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"expected a duration such as '250ms', '30s', '5m', '2h' or '1d', got {value!r}"
            )
        seconds = float(match[1]) * _DURATION_SECONDS[match[2]]
    if seconds < 0:
        raise ValueError(f"expected a duration of zero or more, got {value!r}")
    return seconds


def parse_size(value: str | int) -> int:
    """Return bytes for ``"512KiB"``, ``"2GiB"``, ``"10MB"`` or a number of bytes.

    Raises ValueError naming the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '10MiB', got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"expected a size such as '512KiB', '10MB' or '2GiB', got {value!r}")
        size = int(float(match[1]) * _SIZE_BYTES[match[2]])
    if size < 0:
        raise ValueError(f"expected a size of zero or more, got {value!r}")
    return size
