"""Deliveries on PostgreSQL: fan-out of topic messages to event steps, attempts, leases, fencing.

A mixin of :class:`~wayang.store.postgres.PostgresStore`, the counterpart of
:mod:`wayang.store.sqlite_deliveries`: one :meth:`commit_deliveries` transaction records how
attempts ended, publishes what the successful ones emitted, and turns every message after the
environment's cursor into deliveries that start at once, leased to the caller.

What SQLite gets from its single writer is made explicit here. A commit that may publish takes
the store's topic lock first (messages commit in seq order; see :mod:`wayang.store.postgres`).
The deliveries whose outcomes it records are locked in id order. The fan-out locks its
environment's cursor row, so two engines fanning out one environment take turns: each sees the
cursor the other left and neither starts a delivery the other started.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from wayang.store import rows
from wayang.store.port import (
    DEFAULT_TENANT,
    Delivery,
    DeliveryCommit,
    DeliveryOutcome,
    FanOut,
    LogLine,
    NewTopicMessage,
)
from wayang.store.postgres_connection import log_params
from wayang.store.sql_shared import SharedDeliveryStatements

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wayang.store.postgres_connection import Connection


class DeliveriesMixin(SharedDeliveryStatements):
    """The delivery half of the PostgreSQL store; see the module docstring."""

    if TYPE_CHECKING:  # provided by PostgresStore, which this class is mixed into
        _sql: Mapping[str, str]
        _topic_lock: int

        def _write(self, locks: Iterable[int] = ()) -> AbstractContextManager[Connection]: ...

        def _rows(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]: ...

        def _many(self, conn: Connection, name: str, params: Iterable[rows.Params]) -> None: ...

        def _log_locks(self, lines: Iterable[LogLine]) -> list[int]: ...

    def commit_deliveries(
        self,
        outcomes: Sequence[DeliveryOutcome],
        publish: Sequence[NewTopicMessage],
        fan_out: FanOut | None,
        now: float,
        logs: Sequence[LogLine] = (),
    ) -> DeliveryCommit:
        """Record ``outcomes``, publish their emits (if they count) and ``publish``, store
        ``logs``, and fan out new messages, all in one transaction."""
        locks = self._log_locks(logs)
        if publish or any(outcome.emits for outcome in outcomes):
            locks.append(self._topic_lock)
        with self._write(locks) as conn:
            accepted, stale = self._record_outcomes(conn, outcomes, now)
            counted = set(accepted)
            messages = [m for o in outcomes if o.delivery_id in counted for m in o.emits]
            published = [self._publish(conn, m) for m in (*messages, *publish)]
            self._many(conn, "insert_log", map(log_params, logs))
            started_ids, cursor = self._fan_out(conn, fan_out, now) if fan_out else ([], 0)
        started = self._read(started_ids)
        return DeliveryCommit(accepted, stale, published, started, cursor)

    def _record_outcomes(
        self, conn: Connection, outcomes: Sequence[DeliveryOutcome], now: float
    ) -> tuple[list[str], list[str]]:
        accepted: list[str] = []
        stale: list[str] = []
        if outcomes:
            ids = sorted({outcome.delivery_id for outcome in outcomes})
            conn.execute(self._sql["lock_deliveries"], {"ids": ids})
        for outcome in outcomes:
            params = {
                "delivery_id": outcome.delivery_id,
                "fencing_token": outcome.fencing_token,
                "error": outcome.error,
                "now": now,
            }
            if outcome.status == "retry":
                cursor = conn.execute(
                    self._sql["retry_delivery"], {**params, "due_at": outcome.due_at}
                )
            else:
                cursor = conn.execute(
                    self._sql["finish_delivery"], {**params, "status": outcome.status}
                )
            (accepted if cursor.rowcount == 1 else stale).append(outcome.delivery_id)
        return accepted, stale

    def _publish(self, conn: Connection, message: NewTopicMessage) -> int:
        params = rows.topic_message_params(message)
        found = conn.execute(self._sql["insert_topic_message"], params).fetchone()
        return int(found[0])  # type: ignore[index]

    def _fan_out(self, conn: Connection, fan_out: FanOut, now: float) -> tuple[list[str], int]:
        where = {"tenant": fan_out.tenant, "env": fan_out.env}
        conn.execute(self._sql["ensure_delivery_cursor"], where)
        found = conn.execute(self._sql["delivery_cursor"], where).fetchone()
        cursor = int(found[0]) if found else 0
        page = conn.execute(
            self._sql["messages_after"], {**where, "after_seq": cursor, "limit": fan_out.limit}
        ).fetchall()
        if not page:
            return [], cursor
        new = list(self._deliveries_for(fan_out, map(rows.read_topic_message, page), now))
        self._many(conn, "insert_delivery", new)
        cursor = int(page[-1][0])
        conn.execute(self._sql["move_delivery_cursor"], {**where, "seq": cursor})
        return [row["delivery_id"] for row in new], cursor

    def _read(self, ids: Sequence[str]) -> list[Delivery]:
        if not ids:
            return []
        found = self._rows("read_deliveries", {"ids": list(ids)})
        return [rows.read_delivery(row) for row in found]

    def claim_deliveries(
        self,
        env: str,
        owner: str,
        now: float,
        lease_s: float,
        *,
        limit: int = 100,
        inactive: Sequence[str] = (),
        tenant: str = DEFAULT_TENANT,
    ) -> list[Delivery]:
        """Lease due retries and deliveries whose owner went silent, oldest message first."""
        params = {
            "tenant": tenant,
            "env": env,
            "owner": owner,
            "now": now,
            "lease_s": lease_s,
            "limit": limit,
            "inactive": list(inactive),
        }
        with self._write() as conn:
            ids = [row[0] for row in conn.execute(self._sql["claim_deliveries"], params)]
        return self._read(ids)
