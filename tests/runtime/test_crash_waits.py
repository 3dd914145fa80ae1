"""Crash tests for waiting steps, with real processes on a real SQLite file.

``wayang run`` and ``wayang resume`` are killed with SIGKILL while approvals, event waits, timers
and external steps are pending; votes, completions and events are then sent by separate CLI
processes (``wayang approve``, ``complete``, ``emit``), and a new process carries the run on.
Whatever the order, every wait must resume: a timer fires exactly once and never before its due
time, an event published before its wait starts is kept and the first match in publication order
wins, an approval deadline that passed while no process ran applies its ``on_timeout`` once, and
every step's effect (a ledger line guarded by the idempotency key) lands exactly once. The stored
history must replay without divergence, and nothing may be left over in the store: no open task,
no unconsumed completion, no pending signal, no timer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cli_runs import child_env, wait_for
from runtime_helpers import make_app, start, write_workflow
from wayang.engine import events as ev
from wayang.engine.replay import replay
from wayang.engine.state import RunStatus, StepStatus
from wayang.policy import gate_for
from wayang.runtime.engine import Engine
from wayang.runtime.operations import RunView, load_run
from wayang.runtime.signals import publish, send_signal
from wayang.store.sqlite import SQLiteStore

SEED = int(os.environ.get("WAYANG_CRASH_SEED", "20261121"))
STARTER = "starter"  # who starts the runs (and is no assignee of their approvals)
TOPIC = "shipping.dispatched"
WAITS = ("review", "shipped", "pause", "ticket")


# ------------------------------------------------------------------------------ processes


class Processes:
    """Every ``wayang`` process a test starts; whatever is still alive at the end is killed."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.started: list[subprocess.Popen[str]] = []

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "wayang.cli.main", *args],
            env={**child_env(self.store), "WAYANG_USER": STARTER},
            cwd=self.store.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process

    def call(self, *args: str, timeout: float = 40.0) -> tuple[int, str, str]:
        """Run one CLI command to its end: (exit status, stdout, stderr)."""
        process = self.spawn(*args)
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err

    def call_json(self, *args: str, code: int = 0) -> Any:
        rc, out, err = self.call(*args, "--json")
        assert rc == code, f"wayang {' '.join(args)} exited {rc}: {err}{out}"
        return json.loads(out)

    def cleanup(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.fixture
def wayang(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path / "wayang.db")
    try:
        yield processes
    finally:
        processes.cleanup()


def kill(process: subprocess.Popen[str]) -> bool:
    """SIGKILL ``process`` (and reap it); False if it had already ended."""
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return True


def run_for(process: subprocess.Popen[str], seconds: float) -> None:
    """Let ``process`` go on for ``seconds``, or less if it ends first."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def signal_answer(wayang: Processes, *args: str) -> dict[str, Any]:
    """Send a signal verb; it must be accepted (exit 0)."""
    answer: dict[str, Any] = wayang.call_json(*args)
    assert answer["status"] == "accepted", answer
    return answer


def emit(wayang: Processes, data: dict[str, Any]) -> int:
    published = wayang.call_json("emit", TOPIC, "--data", json.dumps(data), "--as", "shipper")
    assert published["topic"] == TOPIC
    return int(published["seq"])


# ------------------------------------------------------------------------------ the store


def stored(store: Path, run_id: str) -> RunView:
    db = SQLiteStore(store)
    try:
        return load_run(db, run_id)
    finally:
        db.close()


def newest_run(store: Path) -> str | None:
    if not store.exists():
        return None
    db = SQLiteStore(store)
    try:
        runs = db.list_runs(limit=10)
    finally:
        db.close()
    return runs[0].run_id if runs else None


def driven_by(store: Path, run_id: str, pid: int) -> bool:
    """Whether the engine of process ``pid`` holds the run (owners are ``host:pid:random``)."""
    db = SQLiteStore(store)
    try:
        record = db.get_run(run_id)
    finally:
        db.close()
    owner = (record.owner or "") if record is not None else ""
    return owner.split(":")[1:2] == [str(pid)]


def wait_until_driving(store: Path, run_id: str, process: subprocess.Popen[str]) -> None:
    """Wait until ``process`` holds the run, or has ended (it found the run busy, or done)."""
    wait_for(
        lambda: process.poll() is not None or driven_by(store, run_id, process.pid),
        what=f"process {process.pid} to take run {run_id}",
    )


def waiting(store: Path, run_id: str, steps: Sequence[str]) -> bool:
    state = stored(store, run_id).state
    return all(state.step(step).status is StepStatus.WAITING for step in steps)


def of_type(history: Sequence[ev.Event], kind: type[Any], step: str | None = None) -> list[Any]:
    return [e for e in history if isinstance(e, kind) and (step is None or e.step_id == step)]


def commit_times(store: Path, run_id: str) -> dict[int, float]:
    """When each event of the run was written: its seq in the history (from 0) to time."""
    db = SQLiteStore(store)
    try:
        return {record.seq - 1: record.at for record in db.load_history(run_id)}
    finally:
        db.close()


def leftovers(store: Path, run_id: str) -> dict[str, Any]:
    """What the run left in the store; all empty for a run that ended cleanly."""
    db = SQLiteStore(store)
    try:
        found: dict[str, Any] = {
            "completions": db.completions(run_id),
            "timers": db.run_timers(run_id),
            "signals": db.pending_signals(run_id),
        }
    finally:
        db.close()
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT task_id, status FROM tasks WHERE run_id = ? AND status != 'consumed'",
            (run_id,),
        ).fetchall()
    conn.close()
    found["tasks"] = rows
    return found


def check_clean_end(store: Path, run_id: str, ledger: Path, tasks: Sequence[str]) -> RunView:
    """The run succeeded, replays, left nothing behind, and each task's effect landed once."""
    view = stored(store, run_id)
    assert view.state.status is RunStatus.SUCCEEDED, view.state.reason
    report = replay(run_id, view.history, gate_for)
    assert report.divergence is None, report.divergence
    assert leftovers(store, run_id) == {
        "completions": [],
        "timers": [],
        "signals": [],
        "tasks": [],
    }
    assert sorted(ledger.read_text().split()) == sorted(f"{run_id}/{step}" for step in tasks)
    for step in view.state.steps:
        assert len(of_type(view.history, ev.StepSucceeded, step)) == 1, step
    return view


def check_timer(store: Path, view: RunView, step: str, seconds: float) -> None:
    """The timer started once, fired exactly once, and neither fired nor ended early."""
    history = view.history
    (started,) = of_type(history, ev.TimerStarted, step)
    (fired,) = of_type(history, ev.StepTimerFired, step)
    (succeeded,) = of_type(history, ev.StepSucceeded, step)
    assert started.due_at == pytest.approx(started.at + seconds)
    assert fired.due_at == started.due_at
    assert fired.at >= started.due_at
    assert succeeded.at >= started.due_at
    written = commit_times(store, view.state.run_id)
    assert written[history.index(fired)] >= started.due_at
    outputs = view.state.step(step).outputs
    assert outputs["due_at"] == started.due_at
    assert outputs["fired_at"] >= outputs["due_at"]


# ------------------------------------------------------------------------------ workflows


def record(ledger: Path, label: str, pause_ms: int) -> str:
    return (
        'uses = "python:crash_steps:record"\n'
        f'inputs = {{ ledger = "{ledger}", label = "{label}", pause_ms = {pause_ms} }}\n'
    )


def four_waits(ledger: Path, *, timer: str, quorum: int, prep_ms: int, finish_ms: int) -> str:
    """A task, then an approval, an event wait, a timer and an external step side by side,
    then a task after all of them."""
    return f"""
id = "four-waits"

[parameters.order]
default = "o-1"

[steps.prep]
{record(ledger, "prep", prep_ms)}
[steps.review]
kind = "approval"
needs = ["prep"]
assignees = ["alice", "bob", "carol"]
quorum = {quorum}

[steps.shipped]
kind = "event"
needs = ["prep"]
topic = "{TOPIC}"
correlate = "event.order_id == params.order"

[steps.pause]
kind = "timer"
needs = ["prep"]
for = "{timer}"

[steps.ticket]
kind = "noop"
needs = ["prep"]
external = true

[steps.finish]
needs = ["review", "shipped", "pause", "ticket"]
{record(ledger, "finish", finish_ms)}"""


def check_four_waits(
    store: Path, run_id: str, ledger: Path, *, voters: list[str], event_seq: int
) -> RunView:
    view = check_clean_end(store, run_id, ledger, ["prep", "finish"])
    history, state = view.history, view.state
    votes = of_type(history, ev.ApprovalVoted, "review")
    assert sorted(v.actor for v in votes) == sorted(voters)  # each vote counted once
    (granted,) = of_type(history, ev.ApprovalGranted, "review")
    assert sorted(granted.approvers) == sorted(voters)
    (received,) = of_type(history, ev.EventReceived, "shipped")
    assert received.seq == event_seq
    assert state.step("shipped").outputs["order_id"] == "o-1"
    (completed,) = of_type(history, ev.StepCompleted, "ticket")
    assert completed.actor == "ops"
    assert state.step("ticket").outputs == {"ticket": "T-1"}
    assert state.step("finish").outputs == {"label": "finish"}
    return view


# ------------------------------------------------------------------------------ the tests


@pytest.mark.timeout(60)
def test_every_wait_resumes_after_the_run_was_killed(tmp_path: Path, wayang: Processes) -> None:
    store, ledger = wayang.store, tmp_path / "ledger"
    file = write_workflow(
        tmp_path, four_waits(ledger, timer="3s", quorum=2, prep_ms=60, finish_ms=60)
    )
    runner = wayang.spawn("run", str(file), "--json")
    run_id = wait_for(lambda: newest_run(store), what="the run to be stored")
    wait_for(lambda: waiting(store, run_id, WAITS), what="the four waits to be pending")
    assert kill(runner)

    # With nobody driving the run, the pending approval and external step are listed.
    pending = wayang.call_json("approvals")
    assert sorted((p["run_id"], p["step_id"], p["kind"]) for p in pending) == [
        (run_id, "review", "approval"),
        (run_id, "ticket", "complete"),
    ]
    review = next(p for p in pending if p["step_id"] == "review")
    assert review["approvals"] == [] and review["quorum"] == 2

    # Events only publish: a non-matching one first, then the match. The run stays parked.
    other = emit(wayang, {"order_id": "o-2"})
    match = emit(wayang, {"order_id": "o-1", "carrier": "dhl"})
    assert match > other
    assert waiting(store, run_id, WAITS)

    # A refused vote (the starter is no assignee) exits 2 and writes nothing.
    rc, _, err = wayang.call("approve", run_id, "review", "--as", STARTER)
    assert rc == 2, err
    assert "is not an assignee" in err
    assert leftovers(store, run_id)["signals"] == []

    # Each signal adopts the orphaned run, is answered, and leaves the run parked again.
    first = signal_answer(wayang, "approve", run_id, "review", "--as", "alice", "--comment", "ok")
    assert first["outcome"] == "vote recorded (1 of 2 approvals)"
    second = signal_answer(wayang, "approve", run_id, "review", "--as", "bob")
    assert "granted" in second["outcome"]
    ticket = json.dumps({"ticket": "T-1"})
    signal_answer(wayang, "complete", run_id, "ticket", "--outputs", ticket, "--as", "ops")

    result = wayang.call_json("resume", run_id)
    assert result["status"] == "succeeded", result
    assert result["steps"]["shipped"]["outputs"]["carrier"] == "dhl"
    assert result["steps"]["shipped"]["outputs"]["seq"] == match
    view = check_four_waits(store, run_id, ledger, voters=["alice", "bob"], event_seq=match)
    check_timer(store, view, "pause", 3.0)


class Inputs:
    """The inputs a run of :func:`four_waits` needs, sent one at a time by their own processes.

    A signal's process may be killed as well: once its signal is in the run's inbox, the run
    must take it without its sender; if it died before writing it, it is sent again.
    """

    def __init__(self, wayang: Processes, run_id: str, rng: random.Random) -> None:
        ticket = json.dumps({"ticket": "T-1"})
        self.wayang, self.run_id, self.rng = wayang, run_id, rng
        self.todo: list[tuple[str, ...]] = [
            ("emit", TOPIC, "--data", json.dumps({"order_id": "o-9"}), "--as", "shipper"),
            ("emit", TOPIC, "--data", json.dumps({"order_id": "o-1"}), "--as", "shipper"),
            ("approve", run_id, "review", "--as", "alice"),
            ("approve", run_id, "review", "--as", "bob"),
            ("complete", run_id, "ticket", "--outputs", ticket, "--as", "ops"),
        ]
        self.seqs: list[int] = []  # of the events published
        self.orphaned = 0  # signals whose sender was killed after writing them

    def ready(self) -> bool:
        """A signal needs its step to be waiting; an event may be published at any time."""
        if not self.todo:
            return False
        verb, _, step = self.todo[0][:3]
        return verb == "emit" or waiting(self.wayang.store, self.run_id, [step])

    def send(self) -> subprocess.Popen[str]:
        return self.wayang.spawn(*self.todo[0], "--json")

    def settle(self, process: subprocess.Popen[str], killing: bool) -> None:
        """Wait for the sender, or kill it if ``killing``; note what got done."""
        if killing and kill(process):
            if signals_of(self.wayang.store, self.run_id, self.todo[0][-1]):
                self.todo.pop(0)
                self.orphaned += 1
            return
        out, err = process.communicate(timeout=40)
        assert process.returncode == 0, f"{self.todo[0]} exited {process.returncode}: {err}"
        self.done(json.loads(out))

    def done(self, answer: dict[str, Any]) -> None:
        if self.todo.pop(0)[0] == "emit":
            self.seqs.append(int(answer["seq"]))
        else:
            assert answer["status"] == "accepted", answer

    def finish(self) -> None:
        while self.todo:
            self.done(self.wayang.call_json(*self.todo[0]))


def signals_of(store: Path, run_id: str, actor: str | None = None) -> list[tuple[str, str]]:
    """(actor, status) of the signals sent to the run, by ``actor`` if given."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT actor, status FROM signals WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
    conn.close()
    return [(a, status) for a, status in rows if actor is None or a == actor]


@pytest.mark.timeout(120)
def test_resume_killed_again_and_again_while_waits_are_pending(
    tmp_path: Path, wayang: Processes
) -> None:
    rng = random.Random(SEED)
    store, ledger = wayang.store, tmp_path / "ledger"
    file = write_workflow(
        tmp_path, four_waits(ledger, timer="3s", quorum=2, prep_ms=400, finish_ms=300)
    )
    # The first kill lands anywhere from the run's start to just after its waits began.
    runner = wayang.spawn("run", str(file), "--json")
    run_id = wait_for(lambda: newest_run(store), what="the run to be stored")
    run_for(runner, rng.uniform(0.0, 0.8))
    kills = int(kill(runner))

    inputs = Inputs(wayang, run_id, rng)
    busy = 0
    for _round in range(8):
        if not inputs.todo and kills >= 5:
            break
        resume = wayang.spawn("resume", run_id, "--json")
        # The kills' random moments count from when the process holds the run (or ended).
        wait_until_driving(store, run_id, resume)
        sender, killing = None, False
        if inputs.ready() and rng.random() < 0.8:
            run_for(resume, rng.uniform(0.0, 0.5))
            sender = inputs.send()
            # Now and then a signal's process is killed too, about when it sends (or drives).
            killing = inputs.todo[0][0] != "emit" and rng.random() < 0.4
            if killing:
                run_for(sender, rng.uniform(0.3, 0.8))
                inputs.settle(sender, killing)
        run_for(resume, rng.uniform(0.1, 0.9))
        kills += int(kill(resume))
        if resume.returncode not in (0, -signal.SIGKILL):
            # It lost the race for the run to the signal's process, which drives it instead.
            assert resume.returncode == 1, resume.returncode
            busy += 1
        if sender is not None and not killing:
            inputs.settle(sender, killing)  # unanswered, the signal's process adopts the run
    # Whatever did not happen in the rounds happens now, then the run is carried to its end.
    inputs.finish()
    result = wayang.call_json("resume", run_id)
    assert result["status"] == "succeeded", result

    print(f"\n{kills} kills, {inputs.orphaned} signals orphaned, {busy} resumes found it busy")
    assert kills >= 5
    assert signals_of(store, run_id) == [
        ("alice", "accepted"),
        ("bob", "accepted"),
        ("ops", "accepted"),
    ]
    view = check_four_waits(
        store, run_id, ledger, voters=["alice", "bob"], event_seq=inputs.seqs[1]
    )
    check_timer(store, view, "pause", 3.0)


@pytest.mark.timeout(60)
def test_events_published_before_the_wait_are_kept_and_taken_in_order(
    tmp_path: Path, wayang: Processes
) -> None:
    """Two waits on one topic, one after the other: each takes the first event that matches it
    in publication order, even one published before the wait (or the wait before it) began."""
    store, ledger = wayang.store, tmp_path / "ledger"
    order = "event.order_id == params.order"
    file = write_workflow(
        tmp_path,
        f"""
id = "two-events"

[parameters.order]
default = "o-1"

[steps.prep]
{record(ledger, "prep", 1600)}
[steps.packed]
kind = "event"
needs = ["prep"]
topic = "{TOPIC}"
correlate = "{order} and event.stage == 'packed'"

[steps.shipped]
kind = "event"
needs = ["packed"]
topic = "{TOPIC}"
correlate = "{order} and event.stage == 'shipped'"

[steps.finish]
needs = ["shipped"]
{record(ledger, "finish", 0)}""",
    )
    # Published before the run started: not the run's (its waits consider what came after).
    before = emit(wayang, {"order_id": "o-1", "stage": "shipped", "n": 0})
    runner = wayang.spawn("run", str(file), "--json")
    run_id = wait_for(lambda: newest_run(store), what="the run to be stored")
    assert kill(runner)  # prep takes 0.8 s at least: no wait has started
    assert stored(store, run_id).state.step("packed").status is StepStatus.PENDING

    seqs = [
        emit(wayang, {"order_id": "o-2", "stage": "shipped", "n": 1}),  # another order's
        emit(wayang, {"order_id": "o-1", "stage": "shipped", "n": 2}),
        emit(wayang, {"order_id": "o-1", "stage": "packed", "n": 3}),
        emit(wayang, {"order_id": "o-1", "stage": "shipped", "n": 4}),
        emit(wayang, {"order_id": "o-1", "stage": "packed", "n": 5}),
    ]
    assert [before, *seqs] == sorted({before, *seqs})

    result = wayang.call_json("resume", run_id)
    assert result["status"] == "succeeded", result
    steps = result["steps"]
    assert (steps["packed"]["outputs"]["n"], steps["packed"]["outputs"]["seq"]) == (3, seqs[2])
    assert (steps["shipped"]["outputs"]["n"], steps["shipped"]["outputs"]["seq"]) == (2, seqs[1])
    view = check_clean_end(store, run_id, ledger, ["prep", "finish"])
    received = of_type(view.history, ev.EventReceived)
    assert [(e.step_id, e.seq) for e in received] == [("packed", seqs[2]), ("shipped", seqs[1])]


@pytest.mark.timeout(60)
def test_inputs_that_came_before_a_deadline_beat_it_after_a_restart(
    tmp_path: Path, wayang: Processes
) -> None:
    """An event published, and a vote put in the inbox, while nobody drove the run and before
    the deadlines of their waits; the run is resumed only after the deadlines. What came first
    wins: the event is taken and the vote counts, no wait times out."""
    store, ledger = wayang.store, tmp_path / "ledger"
    file = write_workflow(
        tmp_path,
        f"""
id = "on-time"

[parameters.order]
default = "o-1"

[steps.prep]
{record(ledger, "prep", 0)}
[steps.shipped]
kind = "event"
needs = ["prep"]
topic = "{TOPIC}"
correlate = "event.order_id == params.order"
timeout = "3s"

[steps.review]
kind = "approval"
needs = ["prep"]
assignees = ["alice"]
timeout = "3s"
on_reject = "continue"

[steps.finish]
needs = ["shipped", "review"]
{record(ledger, "finish", 0)}""",
    )
    runner = wayang.spawn("run", str(file), "--json")
    run_id = wait_for(lambda: newest_run(store), what="the run to be stored")
    wait_for(lambda: waiting(store, run_id, ["shipped", "review"]), what="both waits")
    assert kill(runner)
    history = stored(store, run_id).history
    due = min(e.due_at for e in of_type(history, ev.EventWaitStarted, "shipped"))

    # Written here, at once, as 'wayang emit' and 'wayang approve' write them: the vote is left
    # in the inbox as by a sender that died before any engine answered it.
    db = SQLiteStore(store)
    try:
        match = publish(db, TOPIC, {"order_id": "o-1"}, actor="shipper")
        data = {"comment": "on time", "fields": {}}
        send_signal(db, run_id, "review", kind="approve", actor="alice", data=data)
        (pending,) = db.pending_signals(run_id)
        (message,) = db.topic_messages(TOPIC)
    finally:
        db.close()
    assert message.seq == match
    assert max(pending.created_at, message.created_at) < due

    time.sleep(max(0.0, due + 0.3 - time.time()))
    result = wayang.call_json("resume", run_id)
    assert result["status"] == "succeeded", result
    assert result["steps"]["shipped"]["outputs"]["seq"] == match
    assert result["steps"]["review"]["outputs"]["approved"] is True
    assert result["steps"]["review"]["outputs"]["approvers"] == ["alice"]
    view = check_clean_end(store, run_id, ledger, ["prep", "finish"])
    assert of_type(view.history, ev.WaitTimedOut) == []
    assert signals_of(store, run_id) == [("alice", "accepted")]


@pytest.mark.timeout(60)
def test_approval_deadlines_that_pass_while_no_process_runs_apply_once(
    tmp_path: Path, wayang: Processes
) -> None:
    store, ledger = wayang.store, tmp_path / "ledger"
    file = write_workflow(
        tmp_path,
        f"""
id = "deadlines"

[steps.prep]
{record(ledger, "prep", 0)}
[steps.review]
kind = "approval"
needs = ["prep"]
assignees = ["alice"]
timeout = "2s"
on_timeout = "approve"

[steps.signoff]
kind = "approval"
needs = ["prep"]
assignees = ["bob"]
timeout = "2s"
on_timeout = "escalate"
escalate_to = ["carol"]
on_reject = "continue"

[steps.finish]
needs = ["review", "signoff"]
{record(ledger, "finish", 0)}""",
    )
    runner = wayang.spawn("run", str(file), "--json")
    run_id = wait_for(lambda: newest_run(store), what="the run to be stored")
    wait_for(lambda: waiting(store, run_id, ["review", "signoff"]), what="both approvals")
    assert kill(runner)
    history = stored(store, run_id).history
    due = {e.step_id: e.due_at for e in of_type(history, ev.ApprovalRequested)}

    # Both deadlines pass with no process running; the approvals are still listed as pending.
    time.sleep(max(0.0, max(due.values()) + 0.2 - time.time()))
    pending = wayang.call_json("approvals")
    assert sorted(p["step_id"] for p in pending) == ["review", "signoff"]

    # The restarted run applies both deadlines at once; it is killed once signoff escalated.
    resume = wayang.spawn("resume", run_id, "--json")
    escalated = wait_for(
        lambda: of_type(stored(store, run_id).history, ev.ApprovalEscalated, "signoff"),
        what="the escalation",
    )
    assert kill(resume)
    state = stored(store, run_id).state
    assert state.step("review").status is StepStatus.SUCCEEDED
    assert state.step("signoff").status is StepStatus.WAITING
    rc, _, err = wayang.call("approve", run_id, "review", "--as", "alice")
    assert rc == 2, err  # decided by its deadline: refused, nothing recorded
    assert "already decided" in err

    # The escalation's own deadline passes while nothing runs, too.
    (escalation,) = escalated
    assert escalation.assignees == ["carol"]
    time.sleep(max(0.0, escalation.due_at + 0.2 - time.time()))
    result = wayang.call_json("resume", run_id)
    assert result["status"] == "succeeded", result
    review, signoff = result["steps"]["review"], result["steps"]["signoff"]
    assert review["outputs"]["approved"] is True
    assert "on_timeout = 'approve'" in review["outputs"]["reason"]
    assert signoff["outputs"]["approved"] is False
    assert "after escalation" in signoff["outputs"]["reason"]

    view = check_clean_end(store, run_id, ledger, ["prep", "finish"])
    history = view.history
    review_timeouts = of_type(history, ev.WaitTimedOut, "review")
    signoff_timeouts = of_type(history, ev.WaitTimedOut, "signoff")
    assert len(review_timeouts) == 1 and len(of_type(history, ev.ApprovalGranted, "review")) == 1
    assert review_timeouts[0].at >= due["review"]
    assert len(signoff_timeouts) == 2  # the deadline, then the escalation's deadline
    assert signoff_timeouts[0].at >= due["signoff"]
    assert signoff_timeouts[1].at >= escalation.due_at
    assert len(of_type(history, ev.ApprovalEscalated, "signoff")) == 1
    assert len(of_type(history, ev.ApprovalRejected, "signoff")) == 1
    assert of_type(history, ev.ApprovalVoted) == []


@pytest.mark.timeout(30)
def test_a_timer_that_fires_early_waits_again_and_the_engine_goes_on(tmp_path: Path) -> None:
    """The wall clock steps back while a timer is pending (an NTP correction): the loop's
    timer fires before the due time by the engine's clock, so the sleep is armed again under
    the same id. It used to be inserted twice, and the store's refusal stopped the engine."""
    file = write_workflow(
        tmp_path,
        """
        id = "sleepy"

        [steps.pause]
        kind = "timer"
        for = "1s"

        [steps.after]
        needs = ["pause"]
        kind = "noop"
        """,
    )
    app = make_app(tmp_path)
    skew = [0.0]

    def clock() -> float:
        return time.time() - skew[0]

    async def go() -> str:
        settings = app.settings.engine
        async with Engine(app.store, app.executor, settings=settings, clock=clock) as engine:
            run_id, done = await start(engine, file)
            await asyncio.sleep(0.3)
            skew[0] = 0.5
            final = await asyncio.wait_for(done, 10)
            assert final.status is RunStatus.SUCCEEDED
            return run_id

    try:
        run_id = asyncio.run(go())
        view = load_run(app.store, run_id)
        (started,) = of_type(view.history, ev.TimerStarted, "pause")
        (fired,) = of_type(view.history, ev.StepTimerFired, "pause")
        assert fired.at >= started.due_at  # by the engine's clock: never early
        assert app.store.run_timers(run_id) == []
        assert replay(run_id, view.history, gate_for).divergence is None
    finally:
        app.close()
