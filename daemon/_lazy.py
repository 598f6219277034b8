"""Names a package exports but imports only on first use (PEP 562).

For subpackages whose modules pull in heavy libraries (the Dropbox SDK,
pyftpdlib, pyOpenSSL) that a daemon not using them should not carry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``modules[name]`` (relative to ``package``) on use."""

    def __getattr__(name: str) -> Any:
        if name in modules:
            return getattr(importlib.import_module(modules[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
