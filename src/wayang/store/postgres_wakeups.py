"""Wake-ups from a PostgreSQL store: LISTEN on one connection of its own (DESIGN.md §5).

Transactions that queue a worker's task or record a worker's result send a ``NOTIFY`` on the
store's channel (:func:`channel_name`), which PostgreSQL delivers when, and only if, they
commit. A :class:`PostgresWakeups` keeps one autocommit connection outside the pool, runs
``LISTEN`` on it and waits on its socket in a thread of its own; a notification whose payload
its listener asked for wakes :meth:`~PostgresWakeups.wait` (a thread blocked in it), and
:meth:`~PostgresWakeups.until` (a coroutine: the thread sets an event of the awaiting loop).

The connection may drop (the server restarts, an administrator ends the session). The thread
then connects again with backoff, 0.1 s doubling up to 5 s; meanwhile ``listening`` is False and
listeners poll at their usual pace. Notifications sent while nobody listened are lost, so losing
and regaining the connection each wake the listener once: it looks at the store, as a poll
would. An idle connection is checked every :data:`PING_S` seconds, so a server that vanished
without closing the socket is noticed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import selectors
import socket
import threading
from collections.abc import Collection

import psycopg
from psycopg import sql

log = logging.getLogger("wayang.store")

RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 5.0
PING_S = 30.0
# PostgreSQL's identifiers, channel names among them, hold at most 63 bytes.
_NAME_BYTES = 63


def channel_name(schema: str) -> str:
    """The NOTIFY channel of the store in ``schema``: ``wayang_<schema>``, shortened with a hash
    of the whole name when that is too long for PostgreSQL."""
    name = f"wayang_{schema}"
    if len(name.encode()) <= _NAME_BYTES:
        return name
    digest = hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()
    head = name.encode()[: _NAME_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{head}_{digest}"


class PostgresWakeups:
    """A :class:`~wayang.store.port.Wakeups` on a LISTEN connection; see the module docstring."""

    def __init__(self, conninfo: str, channel: str, kinds: Collection[str], where: str) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._kinds = frozenset(kinds)
        self._where = where
        self._changed = threading.Condition()
        self._woken = False
        self._awaiting: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}  # under _changed
        self._listening = False
        self._was_lost = False
        self._closed = False
        # Writing to this socket pair interrupts the thread's waits.
        self._stop_reader, self._stop_writer = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._stop_reader, selectors.EVENT_READ, "stop")
        self._thread = threading.Thread(target=self._run, name="wayang-listen", daemon=True)
        self._thread.start()

    @property
    def listening(self) -> bool:
        return self._listening

    @property
    def closed(self) -> bool:
        return self._closed

    def wait(self, timeout: float) -> bool:
        with self._changed:
            if not self._woken and not self._closed:
                self._changed.wait(max(0.0, timeout))
            woken, self._woken = self._woken and not self._closed, False
            return woken

    async def until(self, timeout: float) -> bool:
        """:meth:`wait` on the running event loop: nothing blocks, and the wake-up reaches
        the loop straight from the listening thread, not through a thread of the caller's.
        Cancelling the coroutine stops the wait."""
        event = asyncio.Event()
        with self._changed:
            ready = self._woken or self._closed
            if not ready:
                self._awaiting[event] = asyncio.get_running_loop()
        if not ready:
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, timeout)):
                        await event.wait()
            finally:
                with self._changed:
                    self._awaiting.pop(event, None)
        with self._changed:
            woken, self._woken = self._woken and not self._closed, False
            return woken

    def close(self) -> None:
        """Stop listening; waits return at once from now on. Closing twice is harmless."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
        self._set_awaiting()
        self._stop_writer.send(b"x")
        # A thread still connecting to an unreachable server ends by itself (it is a daemon).
        self._thread.join(timeout=1.0)
        self._stop_writer.close()

    def _wake(self) -> None:
        with self._changed:
            self._woken = True
            self._changed.notify_all()
        self._set_awaiting()

    def _set_awaiting(self) -> None:
        """End the waits of :meth:`until`, each on its own loop."""
        with self._changed:
            awaiting = list(self._awaiting.items())
        for event, loop in awaiting:
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody awaits it now
                loop.call_soon_threadsafe(event.set)

    def _set_listening(self, listening: bool) -> None:
        """Wake the listener whenever this changes: it may have missed news, and its pace
        of polling changes."""
        if listening != self._listening:
            self._listening = listening
            self._wake()

    # ------------------------------------------------------------------ the listening thread

    def _run(self) -> None:
        delay = RECONNECT_FIRST_S
        try:
            while not self._closed:
                try:
                    with self._connect() as conn:
                        self._set_listening(True)
                        delay = RECONNECT_FIRST_S
                        self._listen(conn)
                except Exception as exc:  # psycopg's, the socket's: connect again, later
                    self._lost(exc)
                if self._stopped_within(delay):
                    return
                delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            self._set_listening(False)
            self._selector.close()
            self._stop_reader.close()

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except BaseException:
            conn.close()
            raise
        if self._was_lost:
            log.info("wake-ups from %s come again", self._where)
            self._was_lost = False
        return conn

    def _listen(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Wait on the connection's socket until stopped; raises when the connection drops."""
        self._take(conn)
        fd = conn.fileno()
        self._selector.register(fd, selectors.EVENT_READ, "conn")
        try:
            while True:
                ready = {key.data for key, _ in self._selector.select(PING_S)}
                if "stop" in ready:
                    return
                if not ready:
                    conn.execute("SELECT 1")  # idle: is the server still there?
                self._take(conn)
        finally:
            self._selector.unregister(fd)

    def _take(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Read what arrived (notifications kept while a query ran come first)."""
        payloads = {note.payload for note in conn.notifies(timeout=0)}
        if payloads & self._kinds:
            self._wake()

    def _lost(self, exc: BaseException) -> None:
        if self._closed:
            return
        if self._listening:
            self._was_lost = True
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning(
                "lost the wake-ups connection to %s (%s); polling until it is back",
                self._where,
                detail,
            )
        self._set_listening(False)

    def _stopped_within(self, seconds: float) -> bool:
        return bool(self._selector.select(seconds)) or self._closed
