"""The error bodies the services answer with, for their OpenAPI documents (``responses=`` on routes).

Every route documents the statuses it can answer (STYLE.md "Where we go next"; issue #14: generated
clients broke on undocumented 401/403/404/409/422). The bodies:

- :class:`ErrorBody` ``{"detail": "...", "error": "NotFound"}``: FastAPI's ``HTTPException`` (``detail`` only),
  dispatch's error tree (``detail`` + ``error``, the class name), roster's ``NotFound``/``Conflict``;
  for 422, ``detail`` is the list of :class:`ValidationIssue` (FastAPI's request validation and roster's
  ``InvalidReference`` share that shape) or, in dispatch, a message.
- :class:`ProviderError` ``{"error": "..."}``: notify's answers to provider callbacks.
- :class:`Unavailable` ``{"error": "unavailable", "retry_after_seconds": 2}``: 503 while PostgreSQL or Kafka
  restarts (:func:`shared.service.build_app`), with ``Retry-After`` (RFC 9110 §15.6.4).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["ConfirmationRequired", "ErrorBody", "ProviderError", "Unavailable", "ValidationIssue", "error_responses"]


class ValidationIssue(BaseModel):
    """One refused field: ``loc`` its path (``["body", "members", 0]``, ``["query", "page"]``)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """A refusal: what is wrong, and (dispatch) the error's class."""

    detail: str | list[ValidationIssue] = Field(description="A message, or the refused fields (422).")
    error: str | None = Field(default=None, description="Dispatch: the error class, e.g. `NotFound`.")


class ProviderError(BaseModel):
    """Notify's refusal of a provider callback (bad token, signature, body)."""

    error: str


class ConfirmationRequired(BaseModel):
    """A change that needs confirming (roster: bulk retirements); ``confirm`` is the code to send back."""

    detail: str
    confirm: str


class Unavailable(BaseModel):
    """The database or broker is restarting: try again after ``retry_after_seconds``."""

    error: Literal["unavailable"]
    retry_after_seconds: int


_DESCRIPTIONS = {
    400: "Unreadable request (malformed body or file).",
    401: "No valid bearer token (`WWW-Authenticate: Bearer`).",
    403: "Outside the token's role or unit.",
    404: "Not found (or retired).",
    409: "Conflict with the current state (taken, closed, already done).",
    410: "Gone (expired).",
    413: "Request body too large.",
    422: "Invalid input: the refused fields (`loc`) or a message.",
    429: "Too many changes: retry after `Retry-After` seconds.",
    428: "Confirmation required (a bulk change): send the `confirm` code back as the header it names.",
    503: "PostgreSQL or Kafka unavailable; retry after `Retry-After` seconds.",
}


def error_responses(*codes: int, model: type[BaseModel] = ErrorBody) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for FastAPI: each status in ``codes`` with its description and body ``model``.

    503 always has :class:`Unavailable`, 428 :class:`ConfirmationRequired`. Raises ``KeyError`` for a status without a description here.
    """
    special: dict[int, type[BaseModel]] = {503: Unavailable, 428: ConfirmationRequired}
    return {code: {"model": special.get(code, model), "description": _DESCRIPTIONS[code]} for code in codes}
