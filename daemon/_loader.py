"""Loading one service file as a fresh module object and finding its services.

Every version of a file is executed into a new module object, never
``importlib.reload``-ed, so code already running keeps the module it started
with. A file ``services/helpers.py`` is importable by the other files as
``import helpers``: the current good version of each file sits in
``sys.modules`` under its stem, and files are loaded in the order of their
imports of each other (found statically, so a helper's change can redeploy
the files that import it). A file whose stem would shadow an installed module
is refused: ``services/json.py`` must not replace the standard library.
"""

from __future__ import annotations

import ast
import graphlib
import importlib.machinery
import importlib.util
import re
import sys
import traceback
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ._service import Service
from .exceptions import DeployError

__all__ = [
    "LoadedModule",
    "ParsedSource",
    "deploy_order",
    "is_service_file",
    "load_module",
    "parse_source",
    "unload_module",
]

_MARKER = "__hotwire_service_file__"
SERVICE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")


def is_service_file(path: Path) -> bool:
    """True for ``*.py`` files that are not hidden or an editor's temporary file.

    Editors write ``.#x.py`` (Emacs locks), ``.x.py.swp`` (Vim), ``x.py~``
    and ``#x.py#`` (backups); only the first ends in ``.py``, and it is hidden.
    """
    name = path.name
    return name.endswith(".py") and not name.startswith((".", "#", "~")) and len(name) > 3


@dataclass(frozen=True)
class ParsedSource:
    """A file's syntax tree and the top-level module names it imports."""

    tree: ast.Module
    imports: frozenset[str]


@dataclass(frozen=True)
class LoadedModule:
    """One loaded version of a service file and the service classes it defines."""

    path: Path
    services: tuple[type[Service], ...]


def parse_source(path: Path, source: bytes) -> ParsedSource:
    """Parse ``source``, noting the top-level modules it imports; DeployError on bad syntax."""
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError) as exc:
        raise _failure(path, exc) from exc
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.partition(".")[0])
    return ParsedSource(tree, frozenset(imported - {path.stem}))


def deploy_order(imports: Mapping[Path, Iterable[str]]) -> tuple[list[Path], list[Path]]:
    """Order files so that each comes after the files it imports.

    Returns (ordered, cyclic): files in an import cycle cannot be loaded and
    are left out of ``ordered``; a file that imports one of them is still
    ordered, and its own load decides. ``CycleError`` names one cycle at a
    time, so each is removed in turn until the rest sorts.
    """
    by_stem = {path.stem: path for path in imports}
    graph = {
        path: {by_stem[stem] for stem in stems if stem in by_stem}
        for path, stems in imports.items()
    }
    cyclic: set[Path] = set()
    while True:
        try:
            return list(graphlib.TopologicalSorter(graph).static_order()), sorted(cyclic)
        except graphlib.CycleError as exc:
            cycle = set(exc.args[1])
            cyclic |= cycle
            graph = {path: deps - cycle for path, deps in graph.items() if path not in cycle}


def load_module(path: Path, parsed: ParsedSource) -> LoadedModule:
    """Execute ``path`` as a fresh module and collect its Service classes.

    On success the module is the one ``import <stem>`` gives from then on; on
    any failure the previous version stays in ``sys.modules`` and
    DeployError carries the traceback.
    """
    name = path.stem
    _refuse_shadowing(path, name)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, origin=str(path))
    setattr(module, _MARKER, True)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # dataclasses and pickle look classes' modules up here
    try:
        exec(compile(parsed.tree, str(path), "exec"), module.__dict__)
        services = _collect_services(path, module)
    except BaseException as exc:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        if isinstance(exc, DeployError):
            raise
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit and friends are not deploy errors
        raise _failure(path, exc) from exc
    return LoadedModule(path, services)


def unload_module(path: Path) -> None:
    """Forget the module of a deleted file, if it is ours."""
    module = sys.modules.get(path.stem)
    if module is not None and getattr(module, _MARKER, False):
        del sys.modules[path.stem]


def _refuse_shadowing(path: Path, name: str) -> None:
    existing = sys.modules.get(name)
    if existing is not None:
        if getattr(existing, _MARKER, False):
            return
        shadowed = True
    else:
        try:
            shadowed = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            shadowed = False
    if shadowed:
        message = (
            f"{path.name}: its name would shadow the installed module {name!r}; rename the file"
        )
        raise DeployError(message)


def _collect_services(path: Path, module: types.ModuleType) -> tuple[type[Service], ...]:
    found: dict[str, type[Service]] = {}
    for obj in vars(module).values():
        if not (isinstance(obj, type) and issubclass(obj, Service) and obj is not Service):
            continue
        if obj.__module__ != module.__name__ or obj.__dict__.get("abstract", False):
            continue  # imported from elsewhere, or a base class for other services
        problem = _check_service_class(obj)
        if problem is None and obj.name in found:
            problem = f"service name {obj.name!r} is defined twice in {path.name}"
        if problem is not None:
            message = f"{path.name}: {problem}"
            raise DeployError(message)
        found[obj.name] = obj
    return tuple(found.values())


def _check_service_class(cls: type[Service]) -> str | None:
    name = cls.__dict__.get("name")
    if name is None:
        return f"class {cls.__qualname__} has no name (set name = '...' or abstract = True)"
    if not isinstance(name, str) or not SERVICE_NAME.match(name):
        return (
            f"class {cls.__qualname__}: name must be 1-200 letters, digits, '_', '.', '-',"
            f" got {name!r}"
        )
    if cls.handle is Service.handle:
        return f"class {cls.__qualname__} ({name!r}) defines no handle method"
    for attribute in ("concurrency", "mailbox"):
        value = getattr(cls, attribute)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"class {cls.__qualname__}: {attribute} must be an integer of 1 or more"
    return None


def _failure(path: Path, exc: BaseException) -> DeployError:
    """A DeployError whose details are the traceback from the service file's frames on."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # our own loading frames say nothing to the service's author
    details = "".join(traceback.format_exception(type(exc), exc, tb))
    summary = traceback.format_exception_only(exc)[-1].strip()
    return DeployError(f"{path.name}: {summary}", details)
