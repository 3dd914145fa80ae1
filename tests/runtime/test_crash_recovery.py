"""Crash recovery with real processes: ``wayang run`` and ``wayang resume`` killed with SIGKILL
at random instants, again and again, until the run finishes.

Every step writes its effect to a ledger guarded by its idempotency key, so effects must appear
exactly once however often a step ran; every run must finish, and its stored history must
replay. ``WAYANG_CRASH_ROUNDS`` sets how many runs are put through this (default 8; the figures
in docs/performance.md come from a longer soak with the same test).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wayang.engine.replay import replay
from wayang.runtime.operations import load_run
from wayang.store.sqlite import SQLiteStore

ROUNDS = int(os.environ.get("WAYANG_CRASH_ROUNDS", "8"))
# Kills per run at most: on a slow machine a resume can take longer than the longest random wait,
# and killing it every time would never let the run end. After these the last process finishes.
MAX_KILLS = int(os.environ.get("WAYANG_CRASH_MAX_KILLS", "6"))
TESTS = Path(__file__).resolve().parents[1]
STEPS = ["a", "b1", "b2", "b3", "b4", "shell1", "shell2", "c", "d"]


def workflow(ledger: Path) -> str:
    python = 'uses = "python:crash_steps:record"'
    guarded = (
        f'flock {ledger}.lock sh -c \'echo "$WAYANG_IDEMPOTENCY_KEY $WAYANG_ATTEMPT" >> '
        f'{ledger}.executions; grep -qx "$WAYANG_IDEMPOTENCY_KEY" {ledger} 2>/dev/null || '
        f'echo "$WAYANG_IDEMPOTENCY_KEY" >> {ledger}\''
    )
    steps = [
        ("a", [], python, 400),
        ("b1", ["a"], python, 120),
        ("b2", ["a"], python, 120),
        ("b3", ["a"], python, 120),
        ("b4", ["a"], python, 120),
        ("shell1", ["a"], None, 0),
        ("shell2", ["shell1"], None, 0),
        ("c", ["b1", "b2", "b3", "b4", "shell2"], python, 80),
        ("d", ["c"], python, 40),
    ]
    lines = ['id = "crashy"']
    for step_id, needs, uses, pause in steps:
        lines.append(f"[steps.{step_id}]")
        if needs:
            lines.append("needs = [" + ", ".join(f'"{n}"' for n in needs) + "]")
        if uses:
            lines.append(uses)
            lines.append(
                f'inputs = {{ ledger = "{ledger}", label = "{step_id}", pause_ms = {pause} }}'
            )
        else:
            lines.append(f"run = '''sleep 0.0$(( $$ % 9 )); {guarded}'''")
    return "\n".join(lines) + "\n"


def wayang(store: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "WAYANG_STORE": str(store),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "wayang.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def newest_run(store: Path, known: set[str]) -> str | None:
    if not store.exists():
        return None
    db = SQLiteStore(store)
    try:
        fresh = [r.run_id for r in db.list_runs(limit=100) if r.run_id not in known]
    finally:
        db.close()
    return fresh[0] if fresh else None


def start_up_seconds(store: Path) -> float:
    """How long the CLI takes to start here (slow machines take seconds): kill times are drawn
    after it, so kills land while a run works, not only while the process imports."""
    started = time.monotonic()
    process = wayang(store, "--help")
    process.communicate()
    return time.monotonic() - started


def drive_with_kills(
    store: Path, file: Path, known: set[str], rng: random.Random, start_up: float
) -> tuple[str, int, dict]:
    """Run ``file`` to its end, killing the CLI at random (at most ``MAX_KILLS`` times, then
    letting it finish); returns run id, kills, final JSON."""
    process = wayang(store, "run", str(file), "--json")
    run_id: str | None = None
    kills = 0
    try:
        while True:
            # The first kill always comes before the run can finish (step a alone takes 0.2 s
            # after start-up); later ones fall anywhere.
            wait = rng.uniform(0.05, start_up + 0.2 if kills == 0 else start_up + 0.9)
            deadline = time.monotonic() + wait if kills < MAX_KILLS else float("inf")
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if process.poll() is not None:
                out, err = process.communicate()
                assert process.returncode == 0, f"exit {process.returncode}: {err}"
                result = json.loads(out)
                return result["run_id"], kills, result
            process.send_signal(signal.SIGKILL)
            process.communicate()
            kills += 1
            run_id = run_id or newest_run(store, known)
            if run_id is None:  # killed before the run was written: start it again
                process = wayang(store, "run", str(file), "--json")
            else:
                process = wayang(store, "resume", run_id, "--json")
    finally:  # a failing test leaves no process behind for the next one to trip over
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.mark.timeout(600)
def test_runs_killed_at_random_finish_with_every_effect_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("WAYANG_CRASH_SEED", "20261121")))
    store = tmp_path / "wayang.db"
    known: set[str] = set()
    total_kills = 0
    reruns = 0
    start_up = start_up_seconds(store)
    for round_number in range(ROUNDS):
        ledger = tmp_path / f"ledger-{round_number}"
        file = tmp_path / f"workflow-{round_number}.toml"
        file.write_text(workflow(ledger))
        run_id, kills, result = drive_with_kills(store, file, known, rng, start_up)
        known.add(run_id)
        total_kills += kills
        assert result["status"] == "succeeded", result
        assert set(result["steps"]) == set(STEPS)
        effects = ledger.read_text().split()
        assert sorted(effects) == sorted(f"{run_id}/{step}" for step in STEPS), textwrap.shorten(
            str(effects), 500
        )
        executions = Path(f"{ledger}.executions").read_text().splitlines()
        reruns += len(executions) - len(STEPS)
        db = SQLiteStore(store)
        try:
            view = load_run(db, run_id)
            assert replay(run_id, view.history).divergence is None
            assert db.completions(run_id) == []
        finally:
            db.close()
    print(f"\n{ROUNDS} runs, {total_kills} kills, {reruns} step re-executions, all effects once")
    assert total_kills >= ROUNDS  # the kills did happen
