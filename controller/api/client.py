"""The HTTP side of ``vmn plan``: send a network file to a running controller's API.

Only the standard library, so the CLI needs no HTTP client package.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

URL_ENV = "VMN_API_URL"
DEFAULT_URL = "http://127.0.0.1:9304"


class ApiError(Exception):
    """The API answered with an error (``status``, ``errors``) or could not be reached (status 0)."""

    def __init__(self, status: int, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.status = status
        self.errors = errors


def default_url() -> str:
    """``VMN_API_URL``, or the default API address (``http://127.0.0.1:9304``)."""
    return os.environ.get(URL_ENV, DEFAULT_URL)


def post_migrate(url: str, vm: str, to: str, token: str, timeout: float = 30) -> dict[str, Any]:
    """``POST /api/v1/migrate`` (``vmn migrate``); the decoded answer. Raises :class:`ApiError`."""
    req = urllib.request.Request(
        url.rstrip("/") + "/api/v1/migrate",
        data=json.dumps({"vm": vm, "to": to}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    return _call(req, url, timeout)


def post_plan(url: str, text: bytes, timeout: float = 60) -> dict[str, Any]:
    """``POST /api/v1/plan`` with a network file; the decoded answer.

    Raises :class:`ApiError` with the API's errors (an invalid file: every
    error by path) or why the API could not be reached.
    """
    req = urllib.request.Request(
        url.rstrip("/") + "/api/v1/plan", data=text, method="POST", headers={"Content-Type": "application/yaml"}
    )
    return _call(req, url, timeout)


def _call(req: urllib.request.Request, url: str, timeout: float) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as err:
        try:
            body = json.loads(err.read())
            errors = [str(e) for e in body.get("errors") or [body.get("detail", err.reason)]]
        except (ValueError, AttributeError):
            errors = [f"HTTP {err.code} {err.reason}"]
        raise ApiError(err.code, errors) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ApiError(0, [f"cannot reach the controller's API at {url}: {reason}"]) from None
