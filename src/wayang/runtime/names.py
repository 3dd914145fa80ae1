"""Names the runtime's modules share: the cancel-request namespace and the run errors."""

from __future__ import annotations

from wayang.errors import UsageError, WayangError

CANCEL_REQUESTS = "cancel-requests"
"""Key-value namespace where ``wayang cancel`` leaves a request for the engine driving a run."""


class RunNotFoundError(UsageError):
    """No run has that id in this store."""


class RunBusyError(WayangError):
    """Another live engine drives the run."""


class RunLostError(WayangError):
    """Another engine took the run over while this one drove it."""
