"""The step commands, run in this process: ``steps list|activate|deactivate``, ``flows``,
``lock``, diagnostics for broken step files, ``init --template steps`` and ``emit`` on it."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path

import pytest

from cli_runs import Wayang
from wayang.store.port import Delivery
from wayang.store.sqlite import SQLiteStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ORDER = {"id": "o-1", "item": "widget", "quantity": 2, "customer": "ann"}


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    """A copy of examples/steps-basic (its state and lock files stay in the temporary folder)."""
    target = tmp_path / "steps-basic"
    shutil.copytree(EXAMPLES / "steps-basic", target, ignore=shutil.ignore_patterns(".wayang"))
    return target


def deliveries(db: Path, trace_id: str) -> list[Delivery]:
    with closing(SQLiteStore(db)) as store:
        return store.list_deliveries(trace_id=trace_id)


def emit(wayang: Wayang, project: Path, topic: str, data: object) -> str:
    """``wayang emit`` delivering in this process; the trace id."""
    found = wayang("emit", topic, "--data", json.dumps(data), "--project", str(project), "--json")
    assert found.code == 0, found.err
    return str(found.json()["trace_id"])


# ------------------------------------------------------------------------------ steps list


@pytest.mark.timeout(30)
def test_steps_list_shows_every_step(wayang: Wayang, basic: Path) -> None:
    found = wayang("steps", "list", "--project", str(basic))
    assert found.code == 0, found.err
    assert found.err == ""  # the example loads without a warning
    header, *rows = found.lines
    assert header.split() == ["step", "type", "trigger", "emits", "flows", "active", "file"]
    assert [row.split()[0] for row in rows] == [
        "ConfirmOrder",
        "CreateOrder",
        "GetOrder",
        "StoreOrder",
    ]
    assert "POST /orders" in rows[1] and "steps/create_order.step.py:14" in rows[1]

    listed = wayang("steps", "list", "--project", str(basic), "--json").json()
    store_order = next(item for item in listed if item["name"] == "StoreOrder")
    assert store_order == {
        "name": "StoreOrder",
        "type": "event",
        "trigger": "order.created",
        "emits": ["order.validated"],
        "flows": ["orders"],
        "active": True,
        "file": "steps/store_order.step.py:5",
    }


@pytest.mark.timeout(30)
def test_a_deactivated_step_receives_nothing_until_activated(
    wayang: Wayang, basic: Path, db: Path
) -> None:
    project = str(basic)
    off = wayang("steps", "deactivate", "StoreOrder", "--project", project)
    assert off.code == 0 and "StoreOrder: deactivated (environment dev)" in off.out
    listed = {
        s["name"]: s["active"]
        for s in wayang("steps", "list", "--project", project, "--json").json()
    }
    assert listed == {
        "ConfirmOrder": True,
        "CreateOrder": True,
        "GetOrder": True,
        "StoreOrder": False,
    }

    held = emit(wayang, basic, "order.created", ORDER)
    assert deliveries(db, held) == []  # published, but nothing is delivered to StoreOrder

    on = wayang("steps", "activate", "StoreOrder", "--project", project)
    assert on.code == 0 and "StoreOrder: activated" in on.out
    trace_id = emit(wayang, basic, "order.created", {**ORDER, "id": "o-2"})
    assert [(d.step, d.status) for d in deliveries(db, trace_id)] == [
        ("StoreOrder", "succeeded"),
        ("ConfirmOrder", "succeeded"),
    ]
    # A message published while the step was off stays undelivered (the documented rule).
    assert deliveries(db, held) == []


@pytest.mark.timeout(30)
def test_an_unknown_step_name_is_a_usage_error_with_a_suggestion(
    wayang: Wayang, basic: Path
) -> None:
    found = wayang("steps", "deactivate", "StorOrder", "--project", str(basic))
    assert found.code == 2
    assert "no step is named 'StorOrder'; did you mean 'StoreOrder'?" in found.err
    listed = wayang("steps", "list", "--project", str(basic), "--json").json()
    assert all(step["active"] for step in listed)


# ------------------------------------------------------------------------------ flows


@pytest.mark.timeout(30)
def test_flows_as_text_and_as_json(wayang: Wayang, tmp_path: Path) -> None:
    project = tmp_path / "fanout"
    shutil.copytree(EXAMPLES / "steps-fanout", project)
    text = wayang("flows", "--project", str(project))
    assert text.code == 0, text.err
    assert text.lines[0] == "flow signup (6 steps)"
    assert "  Signup [api POST /signups]" in text.lines
    assert "  SendWelcome --> CompleteSignup  via signup.part.done (welcome sent)" in text.lines
    assert "  CompleteSignup --> AnnounceSignup  via signup.completed" in text.lines

    (graph,) = wayang("flows", "--project", str(project), "--json").json()
    assert graph["name"] == "signup"
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert set(nodes) == {
        "Signup",
        "SendWelcome",
        "CreateAccount",
        "ScoreLead",
        "CompleteSignup",
        "AnnounceSignup",
    }
    assert nodes["Signup"]["type"] == "api" and nodes["Signup"]["trigger"] == "POST /signups"
    assert nodes["CompleteSignup"]["file"] == "steps/complete_signup_step.py"
    edges = {(e["source"], e["target"], e["topic"]) for e in graph["edges"]}
    assert edges == {
        ("Signup", "SendWelcome", "signup.created"),
        ("Signup", "CreateAccount", "signup.created"),
        ("Signup", "ScoreLead", "signup.created"),
        ("SendWelcome", "CompleteSignup", "signup.part.done"),
        ("CreateAccount", "CompleteSignup", "signup.part.done"),
        ("ScoreLead", "CompleteSignup", "signup.part.done"),
        ("CompleteSignup", "AnnounceSignup", "signup.completed"),
    }


# ------------------------------------------------------------------------------ lock


@pytest.mark.timeout(30)
def test_lock_then_check_then_a_changed_file_is_named(wayang: Wayang, basic: Path) -> None:
    project = str(basic)
    written = wayang("lock", "--project", project)
    assert written.code == 0, written.err
    assert f"wrote {basic / 'wayang.lock'} (4 steps)" in written.out
    locked = json.loads((basic / "wayang.lock").read_text())
    assert sorted(locked["steps"]) == ["ConfirmOrder", "CreateOrder", "GetOrder", "StoreOrder"]
    assert locked["steps"]["StoreOrder"]["file"] == "steps/store_order.step.py"

    same = wayang("lock", "--check", "--project", project)
    assert same.code == 0 and "wayang.lock matches the steps" in same.out

    step_file = basic / "steps" / "store_order.step.py"
    step_file.write_text(step_file.read_text() + "\n# a change\n")
    changed = wayang("lock", "--check", "--project", project)
    assert changed.code == 1
    assert "steps/store_order.step.py changed since wayang.lock was written" in changed.out


# ------------------------------------------------------------------------------ broken files


BROKEN_SYNTAX = 'config = {"type": "event", "name": "Half",\n    "subscribes": ["x"]\n\n'
WRONG_SIGNATURE = """\
config = {"type": "event", "name": "OneArg", "subscribes": ["order.created"]}


async def handler(input):
    pass
"""


@pytest.mark.timeout(30)
def test_broken_step_files_give_file_line_diagnostics(wayang: Wayang, basic: Path) -> None:
    (basic / "steps" / "half_step.py").write_text(BROKEN_SYNTAX)
    (basic / "steps" / "one_arg_step.py").write_text(WRONG_SIGNATURE)
    found = wayang("steps", "list", "--project", str(basic))
    assert "steps/half_step.py:1:10: error: cannot import this step file: SyntaxError" in found.err
    assert "steps/one_arg_step.py:4:1: error: step 'OneArg': handler(input) takes 1 argument" in (
        found.err
    )
    assert "2 errors" in found.err
    assert "StoreOrder" in found.out  # the good steps are still listed
    assert found.code == 2

    refused = wayang("lock", "--project", str(basic))
    assert refused.code == 2
    assert refused.err.count("steps/half_step.py:1:10") == 1  # printed once
    assert not (basic / "wayang.lock").exists()


# ------------------------------------------------------------------------------ the template


@pytest.mark.timeout(30)
def test_init_steps_template_then_emit(wayang: Wayang, tmp_path: Path, db: Path) -> None:
    project = tmp_path / "hello"
    made = wayang("init", "--template", "steps", str(project))
    assert made.code == 0, made.err
    assert f"created a steps project in {project}" in made.out
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()) == [
        ".gitignore",
        "README.md",
        "steps/greet_step.py",
        "steps/hello_api_step.py",
        "wayang.toml",
    ]
    again = wayang("init", "--template", "steps", str(project))
    assert again.code == 2 and "pass --force to overwrite" in again.err

    listed = wayang("steps", "list", "--project", str(project))
    assert listed.code == 0 and listed.err == ""  # no warning in a fresh project
    trace_id = emit(wayang, project, "hello.requested", {"name": "Bo"})
    assert [(d.step, d.status) for d in deliveries(db, trace_id)] == [("Greet", "succeeded")]
    (state_file,) = (project / ".wayang" / "state").glob("*.json")
    assert json.loads(state_file.read_text()) == {
        "group": trace_id,
        "values": {"greeting": "Hello, Bo!"},
    }
    assert wayang("lock", "--project", str(project)).code == 0
