"""Identifiers people read and type: run ids sortable by creation time, unique without a server."""

from __future__ import annotations

import secrets
import time


def new_run_id(now: float | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxxxx``: UTC creation time, then 32 random bits.

    Sorting run ids sorts runs by when they started (to the second); the random part keeps ids
    apart when many runs start in the same second, on one machine or many.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(4)}"


def new_trace_id(now: float | None = None) -> str:
    """A trace id: what an API call, a cron fire or an outside emit starts, in the run-id form
    (sortable by time, unique without a server), so traces and runs read alike."""
    return new_run_id(now)
