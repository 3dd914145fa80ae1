"""Steps for the crash tests: each records its effect in a ledger once per idempotency key.

A step may run more than once (at least once, across crashes); an effect guarded by the key must
land exactly once. ``executions`` counts every run of a step, so the test can tell that steps
really did run again after a kill.
"""

from __future__ import annotations

import fcntl
import random
import time
from pathlib import Path

from wayang.executors import StepContext


def record(ledger: str, label: str, ctx: StepContext, pause_ms: int = 0) -> dict[str, str]:
    time.sleep(random.uniform(pause_ms / 2000, pause_ms / 1000))
    path = Path(ledger)
    with open(f"{ledger}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(f"{ledger}.executions", "a") as executions:
            executions.write(f"{ctx.idempotency_key} {ctx.attempt}\n")
        seen = path.read_text().split() if path.exists() else []
        if ctx.idempotency_key not in seen:
            with open(path, "a") as out:
                out.write(f"{ctx.idempotency_key}\n")
                out.flush()
    return {"label": label}
