"""The progress views, fed durable events by hand, and the live view end to end on a terminal."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable

from rich.console import Console

from cli_runs import Wayang
from wayang.cli.progress import LineProgress, LiveProgress, progress_for
from wayang.engine import events as ev
from wayang.engine.state import RunState
from wayang.runtime.operations import RunRequest, prepare_run
from wayang.store.port import LogLine

TEXT = """
    id = "view"
    [steps.build]
    run = "make"
    [steps.test]
    needs = ["build"]
    run = "make test"
    retry = { attempts = 2, delay = "2s", jitter = false }
"""
RUN = "20260101-000000-00000000"
T0 = 1_700_000_000.0


def request(workflow: Callable[[str], str]) -> RunRequest:
    return prepare_run(workflow(TEXT), {}, {}, parallel=2, timeout_s=None, now=T0)


def console(terminal: bool) -> Console:
    return Console(file=io.StringIO(), force_terminal=terminal, width=100, color_system=None)


def text_of(target: Console) -> str:
    file = target.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def history(started: ev.RunStarted) -> list[ev.Event]:
    return [
        started,
        ev.StepScheduled("build", 1, f"{RUN}/build/1", f"{RUN}/build", T0),
        ev.StepStarted("build", 1, T0),
        ev.StepSucceeded("build", 1, {"digest": "abc"}, 0.31, T0 + 0.31),
        ev.StepScheduled("test", 1, f"{RUN}/test/1", f"{RUN}/test", T0 + 0.31),
        ev.StepStarted("test", 1, T0 + 0.31),
        ev.StepFailed("test", 1, "exit status 1", 1, 0.5, False, T0 + 0.81),
        ev.StepRetrying("test", 2, 2.0, T0 + 2.81, T0 + 0.81),
        ev.StepScheduled("test", 2, f"{RUN}/test/2", f"{RUN}/test", T0 + 2.81),
        ev.StepStarted("test", 2, T0 + 2.81),
        ev.StepFailed("test", 2, "exit status 1", 1, 0.4, True, T0 + 3.21),
        ev.RunFailed("a step failed", ["test"], T0 + 3.21),
    ]


def test_line_progress_prints_one_line_per_transition(workflow: Callable[[str], str]) -> None:
    req = request(workflow)
    out, err = console(False), console(False)
    view = LineProgress(req.plan, RunState(RUN), out, err)
    view.on_events("another-run", [req.started])  # not ours: ignored
    for event in history(req.started):
        view.on_events(RUN, [event])
    view.finish(view.state)
    *lines, last = text_of(out).splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines)
    assert [line.partition(" ")[2] for line in lines] == [
        f"run {RUN} started: view 0.1.0, 2 steps",
        "build started",
        "build succeeded (0.31s)",
        "test started",
        "test failed (attempt 1/2): exit status 1, retrying in 2s",
        "test started (attempt 2/2)",
        "test failed (attempt 2/2): exit status 1",
    ]
    assert last == f"run {RUN} failed in 3.2s: a step failed (test)"
    assert (
        text_of(err)
        == f"next: 'wayang logs {RUN} --step test' shows why; 'wayang retry {RUN}' reruns it\n"
    )


def test_live_progress_shows_steps_and_the_tail_of_running_ones(
    workflow: Callable[[str], str],
) -> None:
    req = request(workflow)
    view = LiveProgress(req.plan, RunState(RUN), console(True), console(False))
    events = history(req.started)
    view.on_events(RUN, events[:5])  # build done, test scheduled
    for number in range(5):
        view.on_log(LogLine(RUN, "test", 1, "stdout", f"line {number}", T0 + 1))
    view.on_log(LogLine("another-run", "test", 1, "stdout", "not ours", T0 + 1))
    shown = console(True)
    shown.print(view.render(now=T0 + 1.31))
    text = text_of(shown)
    assert f"run {RUN}  view 0.1.0  running  1.3s" in text
    assert re.search(r"build\s+succeeded\s+1\s+0\.31s", text)
    assert re.search(r"test\s+running\s+1/2\s+1\.0s", text)
    assert [line.strip() for line in text.splitlines() if "│" in line] == [
        "test │ line 2",
        "test │ line 3",
        "test │ line 4",
    ]
    view.on_events(RUN, events[5:])
    final = console(True)
    final.print(view.render(now=T0 + 9))
    assert "│" not in text_of(final) and re.search(r"test\s+failed\s+2/2", text_of(final))


def test_live_progress_runs_and_ends_with_a_summary(workflow: Callable[[str], str]) -> None:
    req = request(workflow)
    out = console(True)
    view = LiveProgress(req.plan, RunState(RUN), out, console(False))

    async def show() -> None:
        async with view.showing():
            view.on_events(RUN, history(req.started))
            await asyncio.sleep(0.15)

    asyncio.run(show())
    view.finish(view.state)
    assert text_of(out).rstrip().endswith(f"run {RUN} failed in 3.2s: a step failed (test)")


def test_progress_for_picks_a_view(workflow: Callable[[str], str]) -> None:
    req = request(workflow)
    state = RunState(RUN)
    terminal, plain = console(True), console(False)
    assert type(progress_for("auto", req.plan, state, terminal, plain)) is LiveProgress
    assert type(progress_for("auto", req.plan, state, plain, plain)) is LineProgress
    assert type(progress_for("json", req.plan, state, terminal, plain)).__name__ == "Progress"


def test_run_on_a_terminal_shows_the_live_view(
    wayang: Wayang, workflow: Callable[[str], str]
) -> None:
    path = workflow('id = "live"\n[steps.hi]\nrun = "echo hi; sleep 0.3"\n')
    result = wayang("--color", "run", path)
    assert result.code == 0, result.err
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.out)
    assert re.search(r"hi\s+succeeded\s+1", plain)
    assert re.search(r"run \S+ succeeded in \d", plain.splitlines()[-1])
