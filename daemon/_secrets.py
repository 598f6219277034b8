"""Secret references in configuration: ``env:NAME``, ``file:PATH``, ``cred:NAME``.

A secret is resolved once, when the configuration loads, into a `Secret`
whose ``repr`` and ``str`` never show the value: a configuration object can be
logged or shown by the admin API without leaking anything. ``cred:NAME`` reads
``$CREDENTIALS_DIRECTORY/NAME``, where systemd's ``LoadCredential=`` puts it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .exceptions import SecretError

__all__ = ["Secret", "resolve_secret"]


class Secret:
    """A resolved secret value that does not show itself.

    ``reveal()`` is the one way to read it; grep for it to audit every use.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str = "literal") -> None:
        self._value = value
        #: Where the value came from (``env:NAME``, ``file:PATH``, ``cred:NAME`` or
        #: ``literal``): safe to show, since it names the reference, not the value.
        self.source = source

    def reveal(self) -> str:
        """Return the secret's value, for handing to a client library."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def resolve_secret(reference: str, *, base_dir: Path, key: str) -> Secret | None:
    """Resolve a secret reference, or take the string as a literal secret.

    ``env:NAME`` whose variable is unset resolves to None, so that optional
    secrets (the admin token) can fall back to a default; the caller decides
    whether None is an error. A missing file or credential is always an error.

    Raises SecretError naming ``key`` and the reference, never a value.
    """
    scheme, sep, rest = reference.partition(":")
    if not sep or scheme not in ("env", "file", "cred"):
        return Secret(reference)
    if not rest:
        raise SecretError(f"{key}: {scheme}: reference names nothing; expected '{scheme}:NAME'")
    if scheme == "env":
        value = os.environ.get(rest)
        return None if value is None else Secret(value, source=reference)
    if scheme == "file":
        path = Path(rest).expanduser()
        path = path if path.is_absolute() else base_dir / path
    else:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise SecretError(
                f"{key}: {reference!r} needs $CREDENTIALS_DIRECTORY, which systemd sets "
                "for units with LoadCredential=; it is not set"
            )
        path = Path(directory) / rest
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"{key}: cannot read {reference!r}: {exc.strerror}") from exc
    return Secret(text.rstrip("\r\n"), source=reference)
