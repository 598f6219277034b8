"""Explaining peers' errors safely, without importing their client libraries."""

from __future__ import annotations

import sys

__all__ = ["describe_dropbox_error"]


def describe_dropbox_error(exc: BaseException) -> str | None:
    """A safe one-line account of a Dropbox SDK error, or None if ``exc`` is not one.

    The SDK costs about 30 MB to import; if it is not loaded, no error can be
    one of its own, so it is looked up rather than imported.
    """
    sdk = sys.modules.get("dropbox.exceptions")
    if sdk is None:
        return None
    if isinstance(exc, sdk.AuthError):
        return f"Dropbox refused the credentials: {exc.error}"
    if isinstance(exc, sdk.ApiError):
        return f"Dropbox refused the request: {exc.error}"
    if isinstance(exc, sdk.HttpError):
        return f"Dropbox answered HTTP {exc.status_code}"
    return None
