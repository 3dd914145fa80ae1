"""PythonExecutor: resolving references, binding inputs, outputs, errors, timeouts, cancellation.

Step functions live in tests/wayang_test_steps.py.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import wayang_test_steps as steps
from wayang.executors import PythonExecutor, TaskResult, TaskSpec


class Lines:
    """A LogSink that remembers every (stream, line) and the thread it was called on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.threads: set[int] = set()

    def __call__(self, stream: str, line: str) -> None:
        self.calls.append((stream, line))
        self.threads.add(threading.get_ident())

    def of(self, stream: str) -> list[str]:
        return [line for name, line in self.calls if name == stream]


def task(uses: str, inputs: dict[str, Any] | None = None, **changes: Any) -> TaskSpec:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "step_id": "upload",
        "attempt": 3,
        "idempotency_key": "run-1/upload",
        "command": None,
        "uses": uses,
        "inputs": inputs or {},
        "env": {},
        "cwd": ".",
        "timeout_s": None,
        "workflow_id": "release",
    }
    return TaskSpec(**(fields | changes))


def run(
    uses: str,
    inputs: dict[str, Any] | None = None,
    executor: PythonExecutor | None = None,
    **changes: Any,
) -> tuple[TaskResult, Lines]:
    lines = Lines()
    result = asyncio.run(
        (executor or PythonExecutor()).execute(task(uses, inputs, **changes), lines)
    )
    return result, lines


def ref(name: str) -> str:
    return f"python:wayang_test_steps:{name}"


# --- calling ----------------------------------------------------------------------------------


def test_a_sync_function_runs_off_the_loop_and_its_dict_becomes_the_outputs() -> None:
    result, _ = run(ref("add"), {"a": 2, "b": 5})
    assert (result.status, result.outputs, result.error, result.exit_code) == (
        "succeeded",
        {"sum": 7},
        None,
        None,
    )


def test_an_async_function_is_awaited() -> None:
    result, _ = run(ref("add_async"), {"a": 2})
    assert (result.status, result.outputs) == ("succeeded", {"sum": 3})


def test_an_object_with_an_async_call_is_awaited() -> None:
    result, _ = run(ref("async_callable"), {"x": 1})
    assert result.outputs == {"result": 2}


def test_a_dotted_attribute_path_is_followed() -> None:
    result, _ = run(ref("Namespace.nested"), {"x": 4})
    assert result.outputs == {"result": 8}


@pytest.mark.parametrize(
    ("value", "outputs"),
    [(5, {"result": 5}), ("text", {"result": "text"}), ([1, None], {"result": [1, None]})],
)
def test_a_non_dict_value_becomes_result(value: Any, outputs: dict[str, Any]) -> None:
    result, _ = run(ref("scalar"), {"value": value})
    assert result.outputs == outputs


def test_none_means_no_outputs() -> None:
    result, _ = run(ref("nothing"))
    assert (result.status, result.outputs) == ("succeeded", {})


def test_sync_functions_use_the_executors_own_pool_when_sized() -> None:
    executor = PythonExecutor(max_threads=2)
    try:
        result, _ = run(ref("whoami"), executor=executor)
    finally:
        executor.close()
    assert result.outputs["thread"].startswith("wayang-step")


def test_a_reference_is_imported_once_per_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    imported: list[str] = []
    real = importlib.import_module

    def counting(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", counting)
    executor = PythonExecutor()

    async def twice() -> list[TaskResult]:
        return [await executor.execute(task(ref("add"), {"a": n}), Lines()) for n in (1, 2)]

    assert [r.outputs for r in asyncio.run(twice())] == [{"sum": 2}, {"sum": 3}]
    assert imported == ["wayang_test_steps"]


# --- the step context -------------------------------------------------------------------------


def test_a_ctx_parameter_receives_the_step_context() -> None:
    result, _ = run(ref("whoami"))
    outputs = dict(result.outputs)
    outputs.pop("thread")
    assert outputs == {
        "run_id": "run-1",
        "step_id": "upload",
        "attempt": 3,
        "key": "run-1/upload",
        "workflow_id": "release",
    }


def test_a_parameter_annotated_step_context_receives_it_whatever_its_name() -> None:
    result, _ = run(ref("by_annotation"), {"name": "x"})
    assert result.outputs == {"step": "upload", "name": "x"}


def test_logger_lines_go_to_the_log_stream_on_the_loop_thread_in_order() -> None:
    result, lines = run(ref("chatty"), {"n": 2})
    assert result.status == "succeeded"
    assert lines.calls == [
        ("log", "DEBUG starting"),
        ("log", 'INFO item index=0 label="two words"'),
        ("log", 'INFO item index=1 label="two words"'),
        ("log", "WARNING careful path=/tmp/x"),
        ("log", "ERROR two"),
        ("log", "lines"),
    ]
    assert lines.threads == {threading.get_ident()}  # never the step's worker thread


def test_an_async_step_logs_directly() -> None:
    _, lines = run(ref("chatty_async"))
    assert lines.calls == [("log", "INFO from the loop ok=True")]


# --- bad references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uses", "error"),
    [
        ("python:nocolon", "bad step reference 'python:nocolon'"),
        ("python::fn", "bad step reference 'python::fn'"),
        (
            "python:x_wayang_missing.y:f",
            "cannot import module 'x_wayang_missing.y': No module named 'x_wayang_missing'",
        ),
        ("python:wayang_test_steps:nope", "module 'wayang_test_steps' has no attribute 'nope'"),
        (
            "python:wayang_test_steps:Namespace.nope",
            "module 'wayang_test_steps' has no attribute 'Namespace.nope'",
        ),
        (
            "python:wayang_test_steps:NOT_A_FUNCTION",
            "python:wayang_test_steps:NOT_A_FUNCTION is not callable: it is 'int'",
        ),
    ],
)
def test_bad_references_fail_with_a_clear_message(uses: str, error: str) -> None:
    result, lines = run(uses)
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith(error), result.error
    assert lines.calls == []  # the message says it all


def test_a_module_that_breaks_on_import_logs_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wayang_broken_on_import.py").write_text("raise RuntimeError('no config')\n")
    (tmp_path / "wayang_missing_dependency.py").write_text("import wayang_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken, lines = run("python:wayang_broken_on_import:f")
    assert broken.error == "cannot import module 'wayang_broken_on_import': RuntimeError: no config"
    assert lines.of("stderr")[-1] == "RuntimeError: no config"
    missing, lines = run("python:wayang_missing_dependency:f")
    assert missing.error == (
        "cannot import module 'wayang_missing_dependency': "
        "No module named 'wayang_no_such_dependency'"
    )
    assert any("wayang_missing_dependency.py" in line for line in lines.of("stderr"))


# --- bad inputs -------------------------------------------------------------------------------


def test_unknown_inputs_fail_listing_the_accepted_names() -> None:
    result, _ = run(ref("add"), {"a": 1, "c": 2, "d": 3})
    assert result.status == "failed"
    assert result.error == (
        "python:wayang_test_steps:add got unknown input(s) 'c', 'd'; it accepts: a, b"
    )


def test_a_function_without_parameters_accepts_no_inputs() -> None:
    result, _ = run(ref("nothing"), {"a": 1})
    assert result.error is not None and result.error.endswith("it accepts: no inputs")


def test_missing_required_inputs_are_named() -> None:
    result, _ = run(ref("add"), {"b": 1})
    assert result.error == "python:wayang_test_steps:add is missing required input(s) 'a'"


def test_var_keyword_functions_take_any_input() -> None:
    result, _ = run(ref("flexible"), {"first": "1", "other": 2})
    assert result.outputs == {"first": "1", "other": 2}


def test_an_input_named_like_the_context_parameter_is_refused() -> None:
    result, _ = run(ref("chatty"), {"n": 1, "context": "x"})
    assert result.status == "failed"
    assert result.error is not None and "clashes with the step-context parameter" in result.error


# --- bad results and exceptions ---------------------------------------------------------------


def test_a_non_serializable_return_value_fails() -> None:
    result, _ = run(ref("not_serializable"))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith(
        "python:wayang_test_steps:not_serializable returned a value that is not JSON-serializable"
    )
    nan, _ = run(ref("scalar"), {"value": float("nan")})
    assert nan.status == "failed"


def test_a_non_string_key_fails() -> None:
    result, _ = run(ref("bad_key"))
    assert (
        result.error == "python:wayang_test_steps:bad_key returned a dict with the non-string key 1"
    )


def test_an_exception_fails_the_step_and_its_traceback_goes_to_stderr() -> None:
    result, lines = run(ref("raises"), {"message": "bad input\nsecond line"})
    assert (result.status, result.error) == ("failed", "ValueError: bad input")
    stderr = lines.of("stderr")
    assert stderr[0] == "Traceback (most recent call last):"
    assert "wayang_test_steps.py" in stderr[1]  # the step's own frame comes first
    assert any("in _helper" in line for line in stderr)
    assert stderr[-2:] == ["ValueError: bad input", "second line"]


def test_an_async_exception_is_reported_the_same_way() -> None:
    result, lines = run(ref("raises_async"))
    assert (result.status, result.error) == ("failed", "KeyError: 'missing'")
    assert lines.of("stderr")[-1] == "KeyError: 'missing'"


def test_a_timeout_error_raised_by_the_step_is_a_failure_not_a_timeout() -> None:
    result, _ = run(ref("raises_timeout"), timeout_s=10)
    assert (result.status, result.error) == ("failed", "TimeoutError: the network gave up")


def test_sys_exit_fails_the_step_not_the_worker() -> None:
    result, _ = run(ref("exits"))
    assert (result.status, result.error) == ("failed", "SystemExit: 3")


# --- timeouts and cancellation ----------------------------------------------------------------


def test_an_async_step_past_its_timeout_is_cancelled() -> None:
    steps.cancelled.clear()
    started = time.monotonic()
    result, _ = run(ref("slow_async"), {"seconds": 30}, timeout_s=0.2)
    assert time.monotonic() - started < 1.0
    assert (result.status, result.error) == ("timed_out", "timed out after 0.2s")
    assert steps.cancelled.is_set()


def test_a_sync_step_past_its_timeout_is_abandoned() -> None:
    executor = PythonExecutor(max_threads=1)

    async def scenario() -> tuple[TaskResult, float]:
        started = time.monotonic()
        result = await executor.execute(
            task(ref("slow_sync"), {"seconds": 0.5}, timeout_s=0.1), Lines()
        )
        return result, time.monotonic() - started

    try:
        result, took = asyncio.run(scenario())
    finally:
        executor.close()
    assert result.status == "timed_out"
    assert took < 0.4  # returned without waiting for the thread


def test_cancelling_an_async_step_cancels_the_coroutine_and_reraises() -> None:
    steps.cancelled.clear()

    assert seconds_to_cancel("slow_async", 30) < 0.5
    assert steps.cancelled.is_set()


def test_cancelling_a_sync_step_reraises_at_once() -> None:
    assert seconds_to_cancel("slow_sync", 0.3) < 0.2


def seconds_to_cancel(name: str, seconds: float) -> float:
    """Start step ``name``, cancel it after 50 ms, and time how long the cancel takes."""

    async def scenario() -> float:
        job = asyncio.create_task(
            PythonExecutor().execute(task(ref(name), {"seconds": seconds}), Lines())
        )
        await asyncio.sleep(0.05)
        started = time.monotonic()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        return time.monotonic() - started

    return asyncio.run(scenario())
