"""The run queue read a page at a time: what it counts, finds and starts matches the whole."""

from __future__ import annotations

from pathlib import Path

from wayang.server.queue import RUN_QUEUE, Limits, RunQueue
from wayang.store import open_store


def test_the_queue_reads_in_pages_and_sees_what_a_whole_read_sees(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "wayang.db"))
    try:
        for i in range(150):  # more than two pages
            value = {
                "run_id": f"r{i}",
                "workflow_id": "wf-a" if i % 3 else "wf-b",
                "submitted_at": 1000.0 + i,
                "payload": "{}",
            }
            store.kv_set(RUN_QUEUE, f"{1000.0 + i:017.6f}/r{i}", value)
        queue = RunQueue(store, Limits(max_runs=10, per_workflow=4))
        whole = queue.entries()
        assert [q.run_id for q in queue.oldest_first()] == [q.run_id for q in whole]
        assert queue.count() == 150 and not queue.looks_empty()
        assert queue.oldest() == whole[0]
        found = queue.find("r137")
        assert found is not None and found.submitted_at == 1137.0
        assert queue.find("r150") is None
        # 10 slots, 2 busy; at most 4 of a workflow: the oldest 4 of wf-a and wf-b each.
        chosen = queue.startable({"wf-c": 2}, now=2000.0)
        assert [q.run_id for q in chosen] == ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r9"]
        assert queue.startable({"wf-c": 10}, now=2000.0) == []
    finally:
        store.close()
