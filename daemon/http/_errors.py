"""The one shape of every HTTP error Hotwire sends, channels and admin API alike.

``{"error": {"status": 404, "message": "...", "cid": "..."}}`` — the message
says what was wrong with the request; never a traceback or a secret.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

__all__ = ["error_document", "error_json"]


def error_document(
    status: int, message: str | None = None, cid: str | None = None
) -> dict[str, Any]:
    """The error body as a dict; ``message`` defaults to the status's reason phrase."""
    return {
        "error": {
            "status": status,
            "message": message or HTTPStatus(status).phrase,
            "cid": cid,
        }
    }


def error_json(status: int, message: str | None = None, cid: str | None = None) -> bytes:
    """The error body, encoded."""
    return json.dumps(error_document(status, message, cid)).encode()
