"""Who a request acts as, and whether it may: the API token check every route makes (through
:func:`guard`, or the hot routes of :mod:`wayang.server.fast_start`)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from starlette.exceptions import HTTPException


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


def guard(resource: str, action: str) -> Any:
    """The dependency of a route on ``resource``/``action``: the token, when there is one.

    Every route declares the resource and action it touches (``x-wayang-resource`` and
    ``x-wayang-action`` in the OpenAPI document), so role-based access can be added route by
    route."""

    async def check(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> None:
        refusal = token_refusal(request.app.state.token, authorization, resource, action)
        if refusal:
            raise HTTPException(401, refusal)

    return {
        "dependencies": [Depends(check)],
        "openapi_extra": {"x-wayang-resource": resource, "x-wayang-action": action},
    }
