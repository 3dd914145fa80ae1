"""Deliveries on SQLite: the fan-out of topic messages to event steps, attempts, leases, fencing.

A mixin of :class:`~wayang.store.sqlite.SQLiteStore`, kept apart because it is its own subsystem:
one :meth:`commit_deliveries` transaction records how attempts ended, publishes what the
successful ones emitted, and turns every message after the environment's cursor into deliveries
that start at once, leased to the caller. So a hop from one step to the next costs one commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
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
from wayang.store.sql_shared import SharedDeliveryStatements


class DeliveriesMixin(SharedDeliveryStatements):
    """The delivery half of the SQLite store; see the module docstring."""

    _sql: dict[str, str] | Any

    if TYPE_CHECKING:  # provided by SQLiteStore, which this class is mixed into

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _rows(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]: ...

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
        with self._write() as conn:
            accepted, stale = self._record_outcomes(conn, outcomes, now)
            counted = set(accepted)
            messages = [m for o in outcomes if o.delivery_id in counted for m in o.emits]
            published = [self._publish(conn, m) for m in (*messages, *publish)]
            if logs:
                conn.executemany(self._sql["insert_log"], map(rows.log_params, logs))
            started_ids, cursor = self._fan_out(conn, fan_out, now) if fan_out else ([], 0)
        started = self._read(started_ids)
        return DeliveryCommit(accepted, stale, published, started, cursor)

    def _record_outcomes(
        self, conn: sqlite3.Connection, outcomes: Sequence[DeliveryOutcome], now: float
    ) -> tuple[list[str], list[str]]:
        accepted: list[str] = []
        stale: list[str] = []
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

    def _publish(self, conn: sqlite3.Connection, message: NewTopicMessage) -> int:
        params = rows.topic_message_params(message)
        return int(conn.execute(self._sql["insert_topic_message"], params).fetchone()[0])

    def _fan_out(
        self, conn: sqlite3.Connection, fan_out: FanOut, now: float
    ) -> tuple[list[str], int]:
        where = {"tenant": fan_out.tenant, "env": fan_out.env}
        found = conn.execute(self._sql["delivery_cursor"], where).fetchone()
        cursor = int(found[0]) if found else 0
        page = conn.execute(
            self._sql["messages_after"], {**where, "after_seq": cursor, "limit": fan_out.limit}
        ).fetchall()
        if not page:
            return [], cursor
        new = list(self._deliveries_for(fan_out, map(rows.read_topic_message, page), now))
        if new:
            conn.executemany(self._sql["insert_delivery"], new)
        cursor = int(page[-1][0])
        conn.execute(self._sql["move_delivery_cursor"], {**where, "seq": cursor})
        return [row["delivery_id"] for row in new], cursor

    def _read(self, ids: Sequence[str]) -> list[Delivery]:
        if not ids:
            return []
        found = self._rows("read_deliveries", {"ids": rows.to_json(list(ids))})
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
            "inactive": rows.to_json(list(inactive)),
        }
        with self._write() as conn:
            ids = [row[0] for row in conn.execute(self._sql["claim_deliveries"], params)]
        return self._read(ids)
