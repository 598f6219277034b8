"""One logged-in ftplib session: what its server supports, how to read its answers.

The pool in ``_ftp`` decides which session runs an operation; the functions
here run it and turn the server's replies into Python values. They raise
ftplib's own exceptions, which :func:`refused` and :func:`broke` sort into
"the server said no" (the session carries on) and "the session is dead".
"""

from __future__ import annotations

import contextlib
import ftplib
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime

# Failures after which a session's state is unknown: it must not be reused.
_BROKEN = (EOFError, OSError, ftplib.error_reply, ftplib.error_proto)
# Replies refusing a command; the session can carry on (except after a 421).
_REFUSALS = (ftplib.error_perm, ftplib.error_temp)
# Whatever the server's side of a session can raise.
FAILURES = (*_BROKEN, ftplib.Error)


@dataclass(frozen=True)
class FileInfo:
    """A remote entry's size in bytes and modification time (UTC, when the server says)."""

    size: int
    mtime: datetime | None
    is_dir: bool = False


@dataclass
class Session:
    """One logged-in ftplib session, whether its server speaks MLST, and since when it idles."""

    ftp: ftplib.FTP
    mlst: bool
    idle_since: float


def announces_mlst(ftp: ftplib.FTP) -> bool:
    """Whether FEAT lists MLST (which, per RFC 3659, implies MLSD); asks for the facts we read."""
    try:
        features = ftp.sendcmd("FEAT").splitlines()[1:-1]
    except ftplib.error_perm:
        return False
    if not any(line.strip().upper().startswith("MLST") for line in features):
        return False
    # Refused: the server's default facts then, which normally include these.
    with contextlib.suppress(ftplib.error_perm):
        ftp.sendcmd("OPTS MLST type;size;modify;")
    return True


def list_names(session: Session, path: str) -> list[str]:
    """Names in the directory ``path``, without ``.`` and ``..``."""
    if session.mlst:
        return list(list_info(session, path))
    # Some servers answer NLST with paths, others with bare names.
    return [name.rsplit("/", 1)[-1] for name in session.ftp.nlst(path)]


def list_info(session: Session, path: str) -> dict[str, FileInfo]:
    """Entries of the directory ``path``: one MLSD, else NLST plus SIZE and MDTM per entry."""
    if not session.mlst:
        names = list_names(session, path)
        _binary_mode(session.ftp)
        return {name: _size_and_mtime(session.ftp, posixpath.join(path, name)) for name in names}
    return {
        name: _info_from_facts(facts)
        for name, facts in session.ftp.mlsd(path)
        if facts.get("type", "").lower() not in ("cdir", "pdir")
    }


def info(session: Session, path: str) -> FileInfo:
    """Size and mtime of ``path``: MLST, else SIZE and MDTM."""
    if not session.mlst:
        _binary_mode(session.ftp)
        return _size_and_mtime(session.ftp, path)
    # The facts come on the control connection: " type=file;size=11;modify=...; /a.txt"
    reply = session.ftp.sendcmd(f"MLST {path}")
    line = next(line for line in reply.splitlines()[1:] if line.startswith(" "))
    facts_text = line.strip().partition(" ")[0]
    facts = dict(fact.partition("=")[::2] for fact in facts_text.split(";") if "=" in fact)
    return _info_from_facts({key.lower(): value for key, value in facts.items()})


def info_or_none(session: Session, path: str) -> FileInfo | None:
    """:func:`info`, or None when the server says there is no such entry."""
    try:
        return info(session, path)
    except ftplib.error_perm:
        return None


def refused(exc: BaseException) -> bool:
    """The server answered "no" (4xx/5xx) and the session can carry on."""
    return isinstance(exc, _REFUSALS) and not _closing(exc)


def broke(exc: BaseException) -> bool:
    """The session died or lost track of the dialogue: discard it."""
    return isinstance(exc, _BROKEN) or _closing(exc)


def reply_code(exc: BaseException) -> int | None:
    text = str(exc)
    return int(text[:3]) if text[:3].isdigit() else None


def describe(exc: BaseException) -> str:
    """A failure in words for an error message; ftplib's own are terse or empty."""
    if isinstance(exc, EOFError):
        return "the server closed the connection"
    if isinstance(exc, TimeoutError):
        return "no answer within the timeout"
    return str(exc) or type(exc).__name__


def _closing(exc: BaseException) -> bool:
    """421: the server is closing the session (its idle timeout, a shutdown)."""
    return isinstance(exc, ftplib.error_temp) and str(exc).startswith("421")


def _info_from_facts(facts: dict[str, str]) -> FileInfo:
    modify = facts.get("modify")
    return FileInfo(
        size=int(facts.get("size", 0)),
        mtime=_parse_time(modify) if modify else None,
        is_dir=facts.get("type", "").lower() in ("dir", "cdir", "pdir"),
    )


def _binary_mode(ftp: ftplib.FTP) -> None:
    """TYPE I before SIZE, which is refused in ASCII mode, where a listing (NLST) leaves us."""
    ftp.voidcmd("TYPE I")


def _size_and_mtime(ftp: ftplib.FTP, path: str) -> FileInfo:
    """SIZE and MDTM, for servers without MLST; the session must be in binary mode."""
    try:
        size = ftp.size(path)
    except ftplib.error_perm:
        # SIZE answers 550 for a directory too: CWD tells the two apart.
        if not _is_dir(ftp, path):
            raise
        return FileInfo(size=0, mtime=None, is_dir=True)
    try:
        mtime: datetime | None = _parse_time(ftp.voidcmd(f"MDTM {path}")[4:].strip())
    except ftplib.error_perm:
        mtime = None
    return FileInfo(size=size or 0, mtime=mtime)


def _is_dir(ftp: ftplib.FTP, path: str) -> bool:
    home = ftp.pwd()
    try:
        ftp.cwd(path)
    except ftplib.error_perm:
        return False
    ftp.cwd(home)
    return True


def _parse_time(text: str) -> datetime:
    """An RFC 3659 time value, ``YYYYMMDDHHMMSS[.sss]`` in UTC."""
    whole, _, fraction = text.partition(".")
    parsed = datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return parsed.replace(microsecond=int(fraction.ljust(6, "0")[:6])) if fraction else parsed
