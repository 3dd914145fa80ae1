"""Running a Python step: ``uses = "python:package.module:function"``.

The inputs are passed as keyword arguments; a parameter named ``ctx`` or ``context`` (or annotated
with :class:`StepContext`) receives the step's context. A returned dict becomes the outputs, any
other value ``{"result": value}``, ``None`` no outputs; either way it must be JSON-serializable.

Async functions run on the event loop and are cancelled on timeout or cancellation. Sync functions
run in a worker thread, and a thread cannot be stopped from outside: on timeout the result is
``timed_out`` and on cancellation :class:`asyncio.CancelledError` is raised at once, but the
function keeps running in the background until it returns, and its result is dropped. Such a
thread stays busy until then, and a process that exits does not wait for it. Long sync steps
should check a deadline themselves, or be async, or be shell steps.

``print()`` in a step is not captured: threads share the one ``sys.stdout``, so there is no telling
which step printed what. Steps log through ``ctx.logger`` instead.
"""

from __future__ import annotations

import asyncio
import asyncio.futures
import asyncio.tasks
import asyncio.timeouts
import contextvars
import functools
import importlib
import inspect
import json
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from wayang.errors import WayangError
from wayang.executors import threads
from wayang.executors.base import LogSink, TaskResult, TaskSpec
from wayang.executors.context import StepContext, StepLogger
from wayang.executors.threads import StepThreads, default_max_threads

PREFIX = "python:"
_CONTEXT_NAMES = frozenset({"ctx", "context"})
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

# Frames of this module and of the machinery between it and the step function are cut from the
# top of a traceback, so the log shows the step's own code first.
_MACHINERY = frozenset(
    module.__file__ for module in (asyncio.futures, asyncio.tasks, asyncio.timeouts, threads)
) | {__file__}


class _StepError(WayangError):
    """The step cannot run, or what it returned is unusable; the message becomes the error.

    A ``__cause__`` is an unexpected exception whose traceback is worth logging.
    """


class _StepTimeoutError(Exception):
    """The step's own deadline passed (as opposed to a TimeoutError raised by the step)."""


class PythonExecutor:
    """Calls ``python:`` step functions; sync ones on up to ``max_threads`` threads of its own
    (by default as many as asyncio's default executor has). Call :meth:`close` when done."""

    def __init__(self, max_threads: int | None = None) -> None:
        self._targets: dict[str, _Target] = {}
        self._threads = StepThreads(max_threads or default_max_threads())

    def close(self) -> None:
        """Let the threads go; a sync step still running finishes in the background."""
        self._threads.close()

    async def execute(self, task: TaskSpec, log: LogSink) -> TaskResult:
        started = time.monotonic()
        try:
            outputs = await self._run(task, log)
        except _StepError as failure:
            if failure.__cause__ is not None:
                _log_traceback(failure.__cause__, log)
            return TaskResult.failed(str(failure), time.monotonic() - started)
        except _StepTimeoutError:
            return TaskResult.timed_out(task.timeout_s, time.monotonic() - started)
        except (Exception, SystemExit) as exc:  # raised by the step; sys.exit() fails only it
            _log_traceback(exc, log)
            return TaskResult.failed(_summary(exc), time.monotonic() - started)
        return TaskResult("succeeded", outputs, None, None, time.monotonic() - started)

    async def _run(self, task: TaskSpec, log: LogSink) -> dict[str, Any]:
        target = self._target(task.uses or "")
        loop = asyncio.get_running_loop()
        kwargs = target.bind(task.inputs, lambda: _context(task, StepLogger(log, loop)))
        deadline = asyncio.timeout(task.timeout_s)
        try:
            async with deadline:
                value = await self._call(target, kwargs)
        except TimeoutError:
            if deadline.expired():
                raise _StepTimeoutError from None
            raise
        return _outputs(target.reference, value)

    def _target(self, reference: str) -> _Target:
        """The resolved callable, cached per executor: importing and inspecting happen once."""
        target = self._targets.get(reference)
        if target is None:
            target = _Target.of(reference, _resolve(reference))
            self._targets[reference] = target
        return target

    async def _call(self, target: _Target, kwargs: dict[str, Any]) -> Any:
        if target.is_async:
            return await target.fn(**kwargs)
        # Like asyncio.to_thread: the thread sees the caller's context variables.
        call = functools.partial(contextvars.copy_context().run, target.fn, **kwargs)
        return await self._threads.run(call)


@dataclass(frozen=True, slots=True)
class _Target:
    """A step function and what its signature accepts, worked out once."""

    reference: str
    fn: Callable[..., Any]
    is_async: bool
    context_param: str | None
    accepted: tuple[str, ...]  # names that inputs may use
    required: tuple[str, ...]
    takes_any: bool  # **kwargs, or a callable whose signature cannot be read

    @classmethod
    def of(cls, reference: str, fn: Callable[..., Any]) -> _Target:
        is_async = _is_async(fn)
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # some builtins: pass the inputs and let Python judge
            return cls(reference, fn, is_async, None, (), (), takes_any=True)
        context = next((p.name for p in params if p.kind in _NAMED and _wants_context(p)), None)
        named = [p for p in params if p.kind in _NAMED and p.name != context]
        return cls(
            reference,
            fn,
            is_async,
            context,
            accepted=tuple(p.name for p in named),
            required=tuple(p.name for p in named if p.default is p.empty),
            takes_any=any(p.kind is p.VAR_KEYWORD for p in params),
        )

    def bind(
        self, inputs: Mapping[str, Any], make_context: Callable[[], StepContext]
    ) -> dict[str, Any]:
        """The keyword arguments for one call, or a :class:`_StepError` naming what is wrong."""
        if self.context_param in inputs:
            raise _StepError(
                f"input {self.context_param!r} clashes with the step-context parameter of "
                f"{self.reference}; rename the input or the parameter"
            )
        unknown = [] if self.takes_any else [n for n in inputs if n not in self.accepted]
        if unknown:
            accepts = ", ".join(self.accepted) or "no inputs"
            raise _StepError(
                f"{self.reference} got unknown input(s) {_quoted(unknown)}; it accepts: {accepts}"
            )
        missing = [name for name in self.required if name not in inputs]
        if missing:
            raise _StepError(f"{self.reference} is missing required input(s) {_quoted(missing)}")
        kwargs = dict(inputs)
        if self.context_param is not None:
            kwargs[self.context_param] = make_context()
        return kwargs


def _resolve(reference: str) -> Callable[..., Any]:
    module_name, _, path = reference.removeprefix(PREFIX).partition(":")
    if not reference.startswith(PREFIX) or not module_name or not path:
        raise _StepError(
            f"bad step reference {reference!r}: expected 'python:package.module:function'"
        )
    found: object = _import(module_name)
    for attribute in path.split("."):
        try:
            found = getattr(found, attribute)
        except AttributeError:
            raise _StepError(f"module {module_name!r} has no attribute {path!r}") from None
    if not callable(found):
        kind = type(found).__name__
        raise _StepError(f"{reference} is not callable: it is {kind!r}, not a function")
    return found


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        # The module itself is missing: the message says it all. Anything else broke while the
        # module was importing, and its traceback goes to the log.
        missing = isinstance(exc, ModuleNotFoundError) and f"{name}.".startswith(f"{exc.name}.")
        raise _StepError(f"cannot import module {name!r}: {exc}") from (None if missing else exc)
    except Exception as exc:
        raise _StepError(f"cannot import module {name!r}: {_summary(exc)}") from exc


def _is_async(fn: Callable[..., Any]) -> bool:
    # An object whose __call__ is a coroutine function counts too; inspect misses it on 3.11.
    # Python looks dunders up on the type, so we do too.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _wants_context(param: inspect.Parameter) -> bool:
    annotation = param.annotation
    if annotation is StepContext:
        return True
    # Under `from __future__ import annotations` the annotation is still a string here.
    named = isinstance(annotation, str) and annotation.rsplit(".", 1)[-1] == "StepContext"
    return named or param.name in _CONTEXT_NAMES


def _context(task: TaskSpec, logger: StepLogger) -> StepContext:
    return StepContext(
        run_id=task.run_id,
        step_id=task.step_id,
        attempt=task.attempt,
        idempotency_key=task.idempotency_key,
        workflow_id=task.workflow_id,
        logger=logger,
    )


def _outputs(reference: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    outputs = dict(value) if isinstance(value, dict) else {"result": value}
    for key in outputs:
        if not isinstance(key, str):
            raise _StepError(f"{reference} returned a dict with the non-string key {key!r}")
    if all(_plain(value) for value in outputs.values()):
        return outputs  # the common case, without encoding it once just to see that it can be
    try:
        json.dumps(outputs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _StepError(
            f"{reference} returned a value that is not JSON-serializable ({exc}); "
            "return a dict of strings, numbers, booleans, lists, dicts or None"
        ) from None
    return outputs


_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def _plain(value: object) -> bool:
    """A value JSON takes as it is: a string, an integer, a boolean, None or a finite float
    (exact types: a subclass may encode differently)."""
    if type(value) in _PLAIN_TYPES:
        return True
    return isinstance(value, float) and type(value) is float and math.isfinite(value)


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _summary(exc: BaseException) -> str:
    """``ExcType: first line of the message`` — the one-line error of a failed result."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {lines[0]}" if lines else name


def _log_traceback(exc: BaseException, log: LogSink) -> None:
    frames = exc.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename in _MACHINERY:
        frames = frames.tb_next
    for chunk in traceback.format_exception(type(exc), exc, frames):
        for line in chunk.rstrip("\n").split("\n"):
            log("stderr", line)
