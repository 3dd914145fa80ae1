"""Whether a worker is alive, judged from its last heartbeat: what ``wayang workers`` shows and
the server's ``wayang_workers`` gauge counts."""

from __future__ import annotations

from wayang.store.port import WorkerRecord

LOST_AFTER_S = 45.0
"""A worker silent this long that did not say it stopped is taken for lost."""
WORKER_STATES = ("running", "draining", "stopped", "lost")


def worker_state(record: WorkerRecord, now: float) -> str:
    """What the worker said, unless it fell silent: then ``lost``."""
    if record.state != "stopped" and now - record.heartbeat_at > LOST_AFTER_S:
        return "lost"
    return record.state
