"""Running a shell step: ``/bin/sh -c command`` in its own process group.

The per-step path is kept lean on purpose, since a step should cost little more than ``sh``
itself: no thread pools, no helper processes and no reader tasks. The child's pipes feed a
protocol that splits lines as the bytes arrive and hands them straight to the log sink.

A step is done when the shell has exited *and* both of its output pipes are closed. A background
job that keeps stdout open (``server &``) therefore keeps the step running until it exits or the
step times out; redirect its output (``server >server.log 2>&1 &``) to detach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from wayang.executors.base import LogSink, TaskResult, TaskSpec
from wayang.executors.output_file import OutputFileError, parse_output_file

LINE_LIMIT = 64 * 1024
"""Longer lines reach the log in pieces of this many bytes, so memory stays bounded."""

_STREAMS = {1: "stdout", 2: "stderr"}


class ShellExecutor:
    """Runs ``task.command`` with ``/bin/sh -c``.

    On timeout or cancellation the whole process group gets SIGTERM, then SIGKILL when
    ``grace_s`` seconds have passed or as soon as the shell has exited and its pipes have closed
    (whichever is first), so nothing of the step outlives it. ``child_setup`` runs in each
    step's process before the shell (a pinned process gives its steps its CPUs back: cpus.py).
    """

    def __init__(self, grace_s: float = 1.0, child_setup: Callable[[], None] | None = None) -> None:
        self._grace_s = grace_s
        self._child_setup = child_setup

    async def execute(self, task: TaskSpec, log: LogSink) -> TaskResult:
        started = time.monotonic()
        if task.command is None:
            return TaskResult.failed("nothing to execute: the step has no command", 0.0)
        fd, output_path = tempfile.mkstemp(prefix="wayang-output-")
        os.close(fd)
        try:
            return await self._run(task, task.command, log, output_path, started)
        finally:
            with contextlib.suppress(FileNotFoundError):  # the step may have removed it
                os.unlink(output_path)

    async def _run(
        self, task: TaskSpec, command: str, log: LogSink, output_path: str, started: float
    ) -> TaskResult:
        try:
            transport, step = await self._spawn(task, command, log, output_path)
        except OSError as exc:
            return TaskResult.failed(f"cannot start /bin/sh: {exc}", time.monotonic() - started)
        try:
            return await self._supervise(task, transport, step, output_path, started)
        finally:
            transport.close()  # the pipes; the process is gone by now

    async def _spawn(
        self, task: TaskSpec, command: str, log: LogSink, output_path: str
    ) -> tuple[asyncio.SubprocessTransport, _StepProtocol]:
        loop = asyncio.get_running_loop()
        spawning = asyncio.ensure_future(
            loop.subprocess_exec(
                lambda: _StepProtocol(log, loop),
                *(*task.launcher, "/bin/sh", "-c", command),
                cwd=task.cwd,
                env=_environment(task, output_path),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, so we can signal all of it
                # None unless the process is pinned; then it only gives the child its CPUs back
                # (one system call: no lock, no import, safe beside the process's threads)
                preexec_fn=self._child_setup,
            )
        )
        try:
            return await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # asyncio cannot cancel a half-made subprocess cleanly: it kills the shell alone, then
            # hangs until whatever else holds the pipes exits. So let the spawn finish, then stop
            # the whole group the usual way.
            await asyncio.wait([spawning])
            if spawning.exception() is None:
                transport, step = spawning.result()
                try:
                    await self._stop(transport, step)
                finally:
                    transport.close()
            raise

    async def _supervise(
        self,
        task: TaskSpec,
        transport: asyncio.SubprocessTransport,
        step: _StepProtocol,
        output_path: str,
        started: float,
    ) -> TaskResult:
        deadline = asyncio.timeout(task.timeout_s)
        try:
            async with deadline:
                await step.wait_finished()
        except TimeoutError:
            await self._stop(transport, step)
            if not deadline.expired():
                raise  # not the step's deadline: a bug in a log sink, say
            return TaskResult.timed_out(task.timeout_s, time.monotonic() - started)
        except BaseException:
            await self._stop(transport, step)  # cancelled, or the log sink raised
            raise
        returncode = transport.get_returncode()
        assert returncode is not None  # finished means exited
        return _result(returncode, output_path, time.monotonic() - started)

    async def _stop(self, transport: asyncio.SubprocessTransport, step: _StepProtocol) -> None:
        """SIGTERM the group, give it ``grace_s`` to go, then SIGKILL whatever is left.

        Closed pipes tell us the children are gone too (the zombies of orphans, which only init
        can reap, would fool a ``killpg(group, 0)`` probe). SIGKILL is sent from ``finally`` so
        that a second cancellation during the grace period still leaves no process behind.
        """
        group = transport.get_pid()  # with start_new_session the leader's pid is the group id
        _signal_group(group, signal.SIGTERM)
        try:
            await asyncio.wait([step.finished], timeout=self._grace_s)
        finally:
            _signal_group(group, signal.SIGKILL)
            await _reaped(step)


async def _reaped(step: _StepProtocol) -> None:
    """Wait until the killed shell is reaped, even through another cancellation (an engine
    closing cancels its tasks again): left unreaped, its process outlives the event loop. The
    wait is short — SIGKILL cannot be caught or ignored — and the cancellation is kept."""
    cancelled = False
    while not step.exited.done():
        try:
            await asyncio.wait([step.exited])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class _StepProtocol(asyncio.SubprocessProtocol):
    """Splits the child's output into lines for the log; knows when the child is done.

    ``exited`` resolves when the shell exits, ``finished`` once its pipes have closed as well.
    A log sink that raises stops the logging; the error is re-raised by :meth:`wait_finished`.
    """

    def __init__(self, log: LogSink, loop: asyncio.AbstractEventLoop) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self._lines = {fd: _LineSplitter(stream, log) for fd, stream in _STREAMS.items()}
        self._error: Exception | None = None

    async def wait_finished(self) -> None:
        # asyncio.wait, not await: a cancelled await would cancel the future itself, and _stop
        # still needs it.
        await asyncio.wait([self.finished])
        if self._error is not None:
            raise self._error

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)  # subprocess pipes are always binary in asyncio
        splitter = self._lines[fd]
        self._guarded(lambda: splitter.feed(data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        splitter = self._lines.pop(fd, None)
        if splitter is not None:
            self._guarded(splitter.flush)
        self._check_finished()

    def process_exited(self) -> None:
        _resolve(self.exited)
        self._check_finished()

    def _guarded(self, call: Callable[[], None]) -> None:
        if self._error is not None:
            return  # the sink already failed; the step is being stopped
        try:
            call()
        except Exception as exc:  # the sink's, not the step's: surfaced by wait_finished
            self._error = exc
            _resolve(self.finished)

    def _check_finished(self) -> None:
        if self.exited.done() and not self._lines:
            _resolve(self.finished)


class _LineSplitter:
    """Bytes in, lines out: a line ends at ``\\n`` or after ``LINE_LIMIT`` bytes."""

    __slots__ = ("_buffer", "_log", "_stream")

    def __init__(self, stream: str, log: LogSink) -> None:
        self._stream = stream
        self._log = log
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start, start + LINE_LIMIT + 1)
            if end >= 0:
                self._emit(buffer[start:end])
                start = end + 1
            elif len(buffer) - start > LINE_LIMIT:
                # A multi-byte character cut here decodes as U+FFFD on both sides.
                self._emit(buffer[start : start + LINE_LIMIT])
                start += LINE_LIMIT
            else:
                break
        del buffer[:start]

    def flush(self) -> None:
        """At EOF: a last line without a newline still counts."""
        if self._buffer:
            self._emit(self._buffer)
            self._buffer = bytearray()

    def _emit(self, line: bytearray) -> None:
        self._log(self._stream, line.decode("utf-8", errors="replace"))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # it may have been cancelled along with its waiter
        future.set_result(None)


def _environment(task: TaskSpec, output_path: str) -> dict[str, str]:
    return {
        **os.environ,
        **task.env,
        "WAYANG_RUN_ID": task.run_id,
        "WAYANG_STEP_ID": task.step_id,
        "WAYANG_ATTEMPT": str(task.attempt),
        "WAYANG_IDEMPOTENCY_KEY": task.idempotency_key,
        "WAYANG_WORKFLOW_ID": task.workflow_id,
        "WAYANG_OUTPUT": output_path,
    }


def _result(returncode: int, output_path: str, duration_s: float) -> TaskResult:
    """Exit 0 and a well-formed output file succeed; outputs of a failed step are not read."""
    if returncode < 0:
        error = f"killed by signal {_signal_name(-returncode)}"
        return TaskResult.failed(error, duration_s, returncode)
    if returncode > 0:
        return TaskResult.failed(f"exit status {returncode}", duration_s, returncode)
    try:
        outputs = _read_outputs(output_path)
    except OutputFileError as exc:
        return TaskResult.failed(str(exc), duration_s, returncode)
    return TaskResult("succeeded", outputs, 0, None, duration_s)


def _read_outputs(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except FileNotFoundError:
        return {}  # the step removed the file: it wrote nothing
    except OSError as exc:
        raise OutputFileError(f"cannot read WAYANG_OUTPUT: {exc}") from None
    return parse_output_file(text)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # real-time signals have no name of their own
        return str(signum)


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(group, signum)
