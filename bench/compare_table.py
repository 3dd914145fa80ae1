"""Turn the JSON lines of ``bench/compare.sh`` into the markdown table of docs/performance.md.

    python3 bench/compare_table.py /tmp/peers/bench/results/compare.jsonl

Each cell is the median over the repetitions; ratios are Wayang's rate over the peer's.
"""

from __future__ import annotations

import json
import sys
from typing import Any

ROWS = [
    # workload, wayang label, [(peer name, label)]
    ("chain 500, sync steps (steps/s)", "wayang-chain", "chain"),
    ("chain 500, async steps (steps/s)", "wayang-chain-async", "chain"),
    ("fanout 1000 (tasks/s)", "wayang-fanout", "fanout"),
    ("many 200×3 (workflows/s)", "wayang-many", "many"),
]
PEERS = {
    "chain": [
        ("DBOS", "dbos-sqlite-chain"),
        ("Prefect", "prefect-sqlite-chain"),
        ("Celery", "celery-chain-client"),
    ],
    "fanout": [
        ("DBOS", "dbos-sqlite-fanout-queue"),
        ("DBOS gather", "dbos-sqlite-fanout-gather"),
        ("Prefect", "prefect-sqlite-fanout-map"),
        ("Celery", "celery-fanout-group"),
    ],
    "many": [("DBOS", "dbos-sqlite-many-start"), ("Celery", "celery-many")],
}


def load(path: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("kind") == "summary":
                found[record["label"]] = record["summary"]
    return found


def median(summary: dict[str, Any] | None, key: str) -> float | None:
    if not summary or key not in summary:
        return None
    return float(summary[key]["median"])


def main() -> None:
    results = load(sys.argv[1])
    print("| workload | Wayang | peer | peer rate | Wayang ÷ peer |")
    print("|---|---|---|---|---|")
    for title, label, family in ROWS:
        ours = median(results.get(label), "rate_per_s")
        for peer, peer_label in PEERS[family]:
            theirs = median(results.get(peer_label), "rate_per_s")
            if ours is None or theirs is None:
                continue
            print(f"| {title} | {ours:,.0f} | {peer} | {theirs:,.1f} | **{ours / theirs:.1f}×** |")
    print()
    print("| start-up and memory | median |")
    print("|---|---|")
    for what, label, key in [
        ("`import wayang.cli.main`, fresh process (s)", "wayang-import", "wall_s"),
        (
            "`wayang run`, 1-step workflow, fresh process and store (s)",
            "wayang-cli-run-trivial",
            "wall_s",
        ),
        ("1-step workflow via the API, whole process (s)", "wayang-trivial", "wall_s"),
        ("DBOS 1-step workflow, whole process (s)", "dbos-sqlite-trivial", "wall_s"),
        ("Prefect 1-step flow, whole process (s)", "prefect-sqlite-trivial", "wall_s"),
        ("Wayang peak RSS, chain 500 (MB)", "wayang-chain", "maxrss_mb"),
        ("Wayang peak RSS, fanout 1000 (MB)", "wayang-fanout", "maxrss_mb"),
        ("Wayang peak RSS, many 200 (MB)", "wayang-many", "maxrss_mb"),
        ("DBOS peak RSS, chain 500 (MB)", "dbos-sqlite-chain", "maxrss_mb"),
        ("shell 200: plain `sh -c true` ×200 (s)", "wayang-shell", "plain_sh_s"),
        ("shell 200: Wayang (s)", "wayang-shell", "t_work"),
        ("shell 200: Wayang overhead per step (ms)", "wayang-shell", "overhead_ms_per_step"),
    ]:
        value = median(results.get(label), key)
        if value is not None:
            print(f"| {what} | {value:.3g} |")


if __name__ == "__main__":
    main()
