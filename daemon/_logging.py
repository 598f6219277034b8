"""Structured logging: JSON lines under systemd, a readable console on a terminal.

Our own code logs through structlog; the stdlib loggers of our dependencies
(hypercorn, dropbox, pyftpdlib) are routed through the same processors by
`structlog.stdlib.ProcessorFormatter`, so every line has one shape. Every line
written while a message is being handled carries its ``cid``, taken from a
context variable that the actor sets and that Trio copies into worker threads.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["configure_logging", "current_cid"]

#: The correlation id of the message being handled by the current task or thread.
current_cid: contextvars.ContextVar[str | None] = contextvars.ContextVar("cid", default=None)


def _add_cid(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    cid = current_cid.get()
    if cid is not None:
        event.setdefault("cid", cid)
    return event


def configure_logging(
    level: str = "info", format: str = "auto", *, stream: TextIO | None = None
) -> None:
    """Configure structlog and the stdlib root logger to write to ``stream`` (stdout).

    ``format`` is ``json``, ``console``, or ``auto``: console when the stream is a terminal.
    """
    stream = stream or sys.stdout
    if format == "auto":
        format = "console" if stream.isatty() else "json"
    rendering: list[Processor] = (
        [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
        if format == "json"
        else [structlog.dev.ConsoleRenderer(colors=stream.isatty())]
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_cid,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Called once per process, before the first line is logged; capture_logs
        # edits the processor list in place, so it sees cached loggers too.
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # Chatty dependencies: their INFO lines are per request or per command.
    for name in ("hypercorn.access", "pyftpdlib", "urllib3", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))
