"""Riding out a store that went away (a PostgreSQL restart): backoff, and saying so once.

A process that loses its store keeps what it has not written and tries again: 0.1 s after the
first failure, then twice as long each time up to :data:`RETRY_MAX_S`. It logs one warning when
an outage starts and one line when the store answers again, with how long it was away, rather
than a warning per failed try.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from wayang.store.port import StoreError

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0


class Backoff:
    """Capped exponential delays: ``first``, twice that, … up to ``cap``; :meth:`reset` after a
    success starts again from ``first``."""

    def __init__(self, first: float = RETRY_FIRST_S, cap: float = RETRY_MAX_S) -> None:
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


class Outage:
    """One warning when ``what`` starts failing for want of the store, one line when it works
    again; :attr:`backoff` says how long to wait between tries meanwhile."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        clock: Callable[[], float] = time.monotonic,
        *,
        cap: float = RETRY_MAX_S,
    ) -> None:
        self._log, self._what, self._clock = log, what, clock
        self.backoff = Backoff(min(RETRY_FIRST_S, cap), cap)
        self.since: float | None = None

    def failed(self, error: BaseException) -> float:
        """Note a failed try; the seconds to wait before the next one."""
        if self.since is None:
            self.since = self._clock()
            self._log.warning(
                "%s failed (%s); trying again until the store answers", self._what, error
            )
        return self.backoff.next()

    def recovered(self) -> None:
        """Note a try that worked; says the store is back if it was away."""
        if self.since is not None:
            away = self._clock() - self.since
            self._log.warning("%s: the store is back after %.1fs", self._what, away)
            self.since = None
        self.backoff.reset()

    def lasted(self) -> float:
        """How long the current outage has lasted (0 if there is none)."""
        return 0.0 if self.since is None else self._clock() - self.since

    @contextmanager
    def absorbing(self) -> Iterator[None]:
        """Around one round of a chore done periodically (renewing leases, polling): a store
        error is noted, not raised, and the next round is the next try."""
        try:
            yield
        except StoreError as exc:
            self.failed(exc)
        else:
            self.recovered()
