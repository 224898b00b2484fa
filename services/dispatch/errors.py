"""Errors of the dispatch service.

Hierarchy::

    DispatchError
    ├── InvalidInput      (422: unknown skill, bad count, point outside the city, wrong village …)
    ├── NotFound          (404: no such incident, call-out, requirement or volunteer)
    ├── Conflict          (409: incident closed, volunteer already called in the incident)
    └── AccessDenied      (401 without a valid token, 403 outside the token's role or unit)

The HTTP layer maps each to its status; nothing is written when one is raised.
"""

from __future__ import annotations

__all__ = ["AccessDenied", "Conflict", "DispatchError", "InvalidInput", "NotFound"]


class DispatchError(Exception):
    """Base of dispatch's errors; ``status`` is the HTTP status it maps to."""

    status = 400


class InvalidInput(DispatchError):
    status = 422


class NotFound(DispatchError):
    status = 404


class Conflict(DispatchError):
    status = 409


class AccessDenied(DispatchError):
    """``status`` is 401 (no or unknown token) or 403 (role or unit scope).

    ``who`` and ``role`` name the operator when known (a 403, or a revoked token's owner), ``token`` is the
    fingerprint of an unknown token: they go into the refusal's audit row (:mod:`shared.refusals`).
    """

    status = 403

    def __init__(self, message: str, *, status: int = 403, who: str | None = None, role: str | None = None,
                 token: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.who = who
        self.role = role
        self.token = token
