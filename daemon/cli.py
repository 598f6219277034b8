"""The ``hotwire`` command: run, check, and friends."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import structlog
import trio

from ._config import Config, default_config_path, load_config
from ._deployer import Deployer
from ._logging import configure_logging
from ._router import Router
from ._supervisor import Supervisor, WorkerRole, stop_when_orphaned
from ._version import __version__
from .exceptions import ConfigError
from .http import admin_token, token_path
from .main import Daemon
from .main import main as daemon_main

__all__ = ["main"]

log = structlog.get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hotwire`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hotwire: {exc}", file=sys.stderr)
        return 2
    # Only long-running commands log to stdout; others print their results there.
    configure_logging(
        config.log.level,
        config.log.format,
        stream=sys.stdout if args.command in ("run", "worker", "emulator") else sys.stderr,
    )
    return int(args.handler(config, args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotwire", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hotwire {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: object, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument(
            "--config",
            type=Path,
            default=None,
            help=f"configuration file (default: $HOTWIRE_CONFIG or {default_config_path()})",
        )
        sub.set_defaults(command=name, handler=handler)
        return sub

    command("run", _run, "run the daemon until SIGTERM or SIGINT")
    command("check", _check, "validate the configuration and import every service file")
    invoke = command("invoke", _invoke, "invoke a service through a running daemon's admin API")
    invoke.add_argument("name", help="the service's name")
    invoke.add_argument("--payload", default=None, help="the payload, as JSON")
    invoke.add_argument("--timeout", type=float, default=None, help="seconds to wait for it")
    invoke.add_argument(
        "--url", default=None, help="the daemon's base URL (default: from [server] in the config)"
    )
    worker = commands.add_parser("worker", help=argparse.SUPPRESS)  # started by the supervisor
    worker.add_argument("--config", type=Path, default=None)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--workers", type=int, required=True)
    worker.set_defaults(command="worker", handler=_worker)
    emulator = command("emulator", _emulator, "run an emulator on its own, for service development")
    emulator.add_argument("kind", choices=["dropbox"], help="which peer to emulate")
    emulator.add_argument(
        "--root", type=Path, default=None, help="folder for the files (default: <state>/dropbox)"
    )
    emulator.add_argument(
        "--port", type=int, default=8443, help="API port; the content host takes the next one"
    )
    emulator.add_argument(
        "--token",
        action="append",
        default=[],
        help="an access token to accept (repeatable; default: generated)",
    )
    return parser


def _run(config: Config, args: argparse.Namespace) -> int:
    # Under socket activation systemd holds the one listening socket: one process.
    count = 1 if os.environ.get("LISTEN_FDS") else config.server.worker_count()
    if count > 1:
        supervisor = Supervisor(config, count)
        trio.run(supervisor.run)
    else:
        trio.run(_serve_until_signalled, config, None)
    return 0


def _worker(config: Config, args: argparse.Namespace) -> int:
    role = WorkerRole.from_environment(args.index, args.workers)
    trio.run(_serve_until_signalled, config, role)
    return 0


def _freeze_startup_objects() -> None:
    """Keep what start-up built out of the garbage collector's full passes.

    Modules, configuration and deployed services live as long as the process,
    yet every full collection walks them all again; under load that showed as
    pauses (p99 33 -> 16 ms under ``bench workers``) and a few percent of
    throughput. Done once, in the process's own entry point after the daemon
    is ready, so that in-process tests never freeze each other's objects.
    """
    gc.collect()
    gc.freeze()


async def _serve_until_signalled(config: Config, role: WorkerRole | None) -> None:
    """Run the daemon; SIGHUP reloads the configuration, SIGTERM or SIGINT stops it.

    A worker also stops when its supervisor is gone.
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[Daemon]) -> None:
                await daemon_main(config, role=role, task_status=task_status)
                nursery.cancel_scope.cancel()  # stopped: no more signals to obey

            daemon = await nursery.start(serve)
            _freeze_startup_objects()
            if role is not None:
                nursery.start_soon(stop_when_orphaned, daemon.stop)
            async for signum in signals:
                log.info("signal_received", signal=signal.Signals(signum).name)
                if signum != signal.SIGHUP:
                    daemon.stop()
                    continue  # until `serve` returns: a second signal changes nothing
                # A bad file keeps the old configuration; the reload logged why.
                with contextlib.suppress(ConfigError):
                    await daemon.reload()


def _emulator(config: Config, args: argparse.Namespace) -> int:
    """Serve the Dropbox emulator until SIGTERM or SIGINT; the log says where and how."""
    from .emulators import serve_standalone  # loaded only for this command (memory)

    root = args.root or config.paths.state / "dropbox"

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    serve_standalone, root, config.paths.state, args.port, args.token
                )
                async for _ in signals:
                    nursery.cancel_scope.cancel()

    trio.run(serve)
    return 0


def _check(config: Config, args: argparse.Namespace) -> int:
    problems = trio.run(_check_services, config)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"hotwire: {len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"hotwire: {config.source} and {config.paths.services} are fine")
    return 0


def _invoke(config: Config, args: argparse.Namespace) -> int:
    """POST /admin/services/NAME/invoke; print the JSON answer; non-zero exit on error."""
    token = admin_token(config, create=False)
    if token is None:
        print(
            f"hotwire: no admin token: set [admin] token or start the daemon once to make "
            f"{token_path(config)}",
            file=sys.stderr,
        )
        return 2
    if args.payload is not None:
        try:
            json.loads(args.payload)
        except json.JSONDecodeError as exc:
            print(f"hotwire: --payload is not valid JSON: {exc}", file=sys.stderr)
            return 2
    url = args.url or f"http://{config.server.host}:{config.server.port}"
    params = {"timeout": args.timeout} if args.timeout is not None else {}
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/admin/services/{args.name}/invoke",
            content=args.payload or b"",
            params=params,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=None if args.timeout is None else args.timeout + 5,
        )
    except httpx.HTTPError as exc:
        print(f"hotwire: cannot reach the daemon at {url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(response.json(), indent=2))
    return 0 if response.is_success else 1


async def _check_services(config: Config) -> list[str]:
    """Deploy every service file into a throwaway router; list failures and dangling jobs."""
    router = Router()
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        deployer = Deployer(config.paths.services, router)
        await deployer.rescan()
        problems = [
            f"{state.path}: {state.traceback}" for state in deployer.states() if state.error
        ]
        problems += [
            f"{config.source}: scheduler job {job.name!r} names {job.service!r}, "
            "which no service file defines"
            for job in config.scheduler.jobs
            if job.service not in router
        ]
        await router.close(grace=1)
    return problems
