"""Who a request acts as, and whether it may: the API token check every route makes (through
:func:`wayang.server.api.guard`, or the hot routes of :mod:`wayang.server.fast_start`)."""

from __future__ import annotations

import hmac


def token_refusal(token: str | None, authorization: str | None, resource: str, action: str) -> str:
    """Why a request with the ``Authorization`` header ``authorization`` may not touch
    ``resource``/``action`` on a server whose token is ``token``; empty when it may."""
    if token is None:
        return ""
    given = (authorization or "").removeprefix("Bearer ").strip()
    if hmac.compare_digest(given.encode(), token.encode()):
        return ""
    return (
        f"{resource}.{action} needs the API token: send 'Authorization: Bearer TOKEN' "
        "(WAYANG_API_TOKEN or the token file of the server)"
    )
