"""The operator console at ``/console/``: server-rendered pages (Jinja2) and a small script, in Chinese.

Pages carry no operator data: the script signs in with the operator's token (kept in ``sessionStorage``)
and calls dispatch's own API with ``Authorization: Bearer``, so scope and refusals are the API's.
The board is live through :func:`router`'s ``GET /incidents/{id}/stream`` (Server-Sent Events fed by
:class:`~services.dispatch.console.live.BoardHub`).
"""

from .routes import router, stop_hub

__all__ = ["router", "stop_hub"]
