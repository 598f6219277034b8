"""``from zato.server.service import Service`` for service files written for Zato.

When the real Zato is not installed, tiny stand-in modules ``zato``,
``zato.server`` and ``zato.server.service`` are registered so that Zato-style
service files deploy unchanged; their ``Service`` is Hotwire's.
"""

from __future__ import annotations

import importlib.util
import sys
import types

from ._service import Service

__all__ = ["install_zato_alias"]


def install_zato_alias() -> None:
    """Register the stand-in modules unless a real ``zato`` package is importable."""
    if "zato" in sys.modules or importlib.util.find_spec("zato") is not None:
        return
    parent: types.ModuleType | None = None
    for name in ("zato", "zato.server", "zato.server.service"):
        module = types.ModuleType(name, "Hotwire's stand-in for Zato's module of this name.")
        module.__path__ = []  # a package, so that the submodule import resolves
        sys.modules[name] = module
        if parent is not None:
            setattr(parent, name.rpartition(".")[2], module)
        parent = module
    sys.modules["zato.server.service"].Service = Service  # type: ignore[attr-defined]
