"""The bearer token of the API's mutating calls.

The token comes from the controller's environment (``VMN_API_TOKEN``) or,
without it, from the file ``controller.api_token_file`` names (relative to
the network file's directory; surrounding whitespace is stripped). Without
either, mutating calls are disabled.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

from controller.config.model import ControllerSettings

TOKEN_ENV = "VMN_API_TOKEN"


class Denied(Exception):
    """A mutating call is refused: ``status`` 401 (no or wrong token) or 403 (disabled)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def expected_token(env: Mapping[str, str], settings: ControllerSettings, config_path: str | None) -> str:
    """The configured token.

    Raises :class:`Denied` (403) when none is configured, or the token file
    cannot be read or is empty.
    """
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    name = settings.api_token_file
    if not name:
        raise Denied(
            403, f"mutating calls are disabled: no API token configured (set {TOKEN_ENV} or controller.api_token_file)"
        )
    path = os.path.join(os.path.dirname(os.path.abspath(config_path)) if config_path else "", name)
    try:
        with open(path, encoding="utf-8") as stream:
            token = stream.read().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise Denied(403, f"mutating calls are disabled: token file {path} unreadable: {err}") from None
    if not token:
        raise Denied(403, f"mutating calls are disabled: token file {path} is empty")
    return token


def check_bearer(authorization: str | None, expected: str) -> None:
    """Accept ``Authorization: Bearer <expected>``; raise :class:`Denied` (401) otherwise."""
    if not authorization:
        raise Denied(401, "this call needs 'Authorization: Bearer <token>'")
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Denied(401, "the Authorization header must be 'Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Denied(401, "wrong API token")
