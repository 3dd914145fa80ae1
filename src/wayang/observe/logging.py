"""Structured logs of the server: one line per record, as JSON or as readable text.

Fields a record carries through ``extra=`` (``run_id``, ``step_id``, ``trace_id``, ...) become
keys of the JSON object, or ``key=value`` pairs after the text message. :class:`EventLogger` is an
engine observer that writes one line per notable event of a run.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

from wayang.engine import events as ev

LOGGER_NAME = "wayang"

FIELDS = (
    "run_id",
    "workflow_id",
    "step_id",
    "attempt",
    "trace_id",
    "delivery_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "error",
)
"""The ``extra=`` keys a formatter writes, in this order; other attributes are left out."""


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: record.__dict__[name] for name in FIELDS if name in record.__dict__}


class JsonFormatter(logging.Formatter):
    """``{"ts": ISO-8601 UTC, "level", "logger", "msg", fields..., "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "ts": stamp.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line |= _fields(record)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level msg key=value ...`` in local time; values with spaces are quoted."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [clock, f"{record.levelname.lower():<7}", record.getMessage()]
        parts += [f"{key}={_text(value)}" for key, value in _fields(record).items()]
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _text(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return orjson.dumps(text).decode()
    return text


class _StderrHandler(logging.StreamHandler[TextIO]):
    """The one handler :func:`configure_logging` owns (found again, and replaced, by type)."""


def configure_logging(fmt: Literal["text", "json"], level: str = "INFO") -> logging.Logger:
    """Send the ``wayang`` logger's records, at ``level`` and above, to stderr in ``fmt``.

    Calling it again replaces the handler it installed (so there is always one) and picks up
    the current ``sys.stderr``. The root logger is left alone; ``wayang`` stops propagating to
    it, so a root handler someone else configured does not print every line twice.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


class EventLogger:
    """An engine observer logging run starts and ends, step attempts, retries and dead letters,
    with ``run_id`` and ``step_id`` as fields."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(f"{LOGGER_NAME}.runs")
        self._handlers: dict[type[ev.Event], Callable[[str, Any], None]] = {
            ev.RunStarted: self._run_started,
            ev.RunSucceeded: self._run_succeeded,
            ev.RunFailed: self._run_failed,
            ev.RunCancelled: self._run_cancelled,
            ev.StepStarted: self._step_started,
            ev.StepSucceeded: self._step_succeeded,
            ev.StepFailed: self._step_failed,
            ev.StepRetrying: self._step_retrying,
        }

    def on_events(self, run_id: str, events: Sequence[ev.Event]) -> None:
        for event in events:
            handle = self._handlers.get(type(event))
            if handle is not None:
                handle(run_id, event)

    def _log(self, level: int, msg: str, run_id: str, **fields: object) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, extra={"run_id": run_id, **fields})

    def _run_started(self, run_id: str, event: ev.RunStarted) -> None:
        self._log(logging.INFO, "run started", run_id, workflow_id=event.workflow_id)

    def _run_succeeded(self, run_id: str, event: ev.RunSucceeded) -> None:
        self._log(logging.INFO, "run succeeded", run_id, status="succeeded")

    def _run_failed(self, run_id: str, event: ev.RunFailed) -> None:
        self._log(logging.WARNING, "run failed", run_id, status="failed", error=event.reason)

    def _run_cancelled(self, run_id: str, event: ev.RunCancelled) -> None:
        self._log(logging.INFO, "run cancelled", run_id, status="cancelled", error=event.reason)

    def _step_started(self, run_id: str, event: ev.StepStarted) -> None:
        fields = {"step_id": event.step_id, "attempt": event.attempt}
        self._log(logging.INFO, "step started", run_id, **fields)

    def _step_succeeded(self, run_id: str, event: ev.StepSucceeded) -> None:
        self._log(
            logging.INFO,
            "step succeeded",
            run_id,
            step_id=event.step_id,
            attempt=event.attempt,
            status="succeeded",
            duration_ms=round(event.duration_s * 1000, 1),
        )

    def _step_failed(self, run_id: str, event: ev.StepFailed) -> None:
        fields = {
            "step_id": event.step_id,
            "attempt": event.attempt,
            "status": "timed_out" if event.timed_out else "failed",
            "duration_ms": round(event.duration_s * 1000, 1),
            "error": event.error,
        }
        self._log(logging.WARNING, "step failed", run_id, **fields)
        if event.final:
            self._log(logging.ERROR, "dead letter: the step failed for good", run_id, **fields)

    def _step_retrying(self, run_id: str, event: ev.StepRetrying) -> None:
        msg = f"step retrying in {event.delay_s:.1f}s"
        self._log(logging.INFO, msg, run_id, step_id=event.step_id, attempt=event.next_attempt)
