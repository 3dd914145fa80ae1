"""Structured logs: JSON lines that parse, readable text, and one line per notable run event."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest

from support.engine_sim import Sim
from wayang.observe import EventLogger, configure_logging

SHIP = """
id = "ship"
[steps.build]
run = "echo build"
retry = { attempts = 2 }
"""


@pytest.fixture(autouse=True)
def restore_wayang_logger() -> Iterator[None]:
    """The ``wayang`` logger is process-wide: put it back as it was after each test."""
    logger = logging.getLogger("wayang")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_json_lines_carry_the_fields_given(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("json", "debug")
    logger.info("step done", extra={"run_id": "r1", "step_id": "build", "duration_ms": 12.5})
    logger.getChild("http").warning("slow", extra={"route": "/runs", "status": 200, "other": 1})
    done, slow = lines(capsys)
    assert done == {
        "ts": done["ts"],
        "level": "info",
        "logger": "wayang",
        "msg": "step done",
        "run_id": "r1",
        "step_id": "build",
        "duration_ms": 12.5,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(done["ts"]))
    assert slow["logger"] == "wayang.http" and slow["route"] == "/runs" and "other" not in slow


def test_an_exception_is_kept_on_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("json")
    try:
        raise RuntimeError("disk full")
    except RuntimeError:
        logger.exception("commit failed", extra={"run_id": "r1"})
    [line] = lines(capsys)
    assert line["level"] == "error" and "RuntimeError: disk full" in str(line["exc"])


def test_text_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("text")
    logger.info("run started", extra={"run_id": "r1", "error": "two words"})
    logger.debug("not shown at INFO")
    [line] = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r'\d\d:\d\d:\d\d info +run started run_id=r1 error="two words"', line)


def test_configuring_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("text")
    logger = configure_logging("json", "warning")
    assert len(logger.handlers) == 1 and not logger.propagate
    logger.warning("once", extra={"run_id": "r1"})
    logger.info("filtered")
    assert [line["msg"] for line in lines(capsys)] == ["once"]


def test_event_logger_writes_a_line_per_notable_event(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    sim = Sim.begin(SHIP)
    sim.finish("build", "failed")
    sim.fire_timers()
    sim.finish("build", "failed")
    EventLogger().on_events("r1", sim.history)

    logged = lines(capsys)
    assert [re.sub(r"[\d.]+s$", "Ns", str(line["msg"])) for line in logged] == [
        "run started",
        "step started",
        "step failed",
        "step retrying in Ns",
        "step started",
        "step failed",
        "dead letter: the step failed for good",
        "run failed",
    ]
    assert {line["run_id"] for line in logged} == {"r1"}
    assert logged[0]["workflow_id"] == "ship"
    assert [line["attempt"] for line in logged[1:3]] == [1, 1]
    assert logged[6]["level"] == "error" and logged[6]["step_id"] == "build"
    assert logged[7]["status"] == "failed"
