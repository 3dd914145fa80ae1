"""Discovery finds step files at any depth, imports them once, and reports failures at their line."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wayang.errors import Severity
from wayang.steps.discovery import (
    MODULE_PREFIX,
    StepLoader,
    discover_steps,
    find_step_files,
    load_step_file,
)
from wayang.steps.model import Emit, StepDef

FIXTURES = Path(__file__).parent / "fixtures"
EVENT = """\
config = {{
    "type": "event",
    "name": "{name}",
    "subscribes": ["{topic}"],
    "emits": [],
}}


async def handler(input, ctx):
    return {value!r}
"""


@pytest.fixture
def shop(shop_root: Path) -> Path:
    return shop_root


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def by_name(steps: list[StepDef]) -> dict[str, StepDef]:
    return {step.name: step for step in steps}


# --- finding files -----------------------------------------------------------------------------


def test_step_files_are_found_at_any_depth_and_junk_folders_skipped(tmp_path: Path) -> None:
    for name in [
        "steps/a.step.py",
        "steps/deep/er/b_step.py",
        "src/c_step.py",
        "steps/plain.py",
        "steps/stepper.py",
        "steps/__pycache__/d.step.py",
        "steps/.hidden/e.step.py",
        "steps/node_modules/f.step.py",
        "src/.venv/lib/g_step.py",
        "other/h.step.py",
    ]:
        write(tmp_path, name, "")
    found = [path.relative_to(tmp_path).as_posix() for path in find_step_files(tmp_path)]
    assert found == ["src/c_step.py", "steps/a.step.py", "steps/deep/er/b_step.py"]
    other = find_step_files(tmp_path, ["other", "steps/deep"])
    assert [p.name for p in other] == ["h.step.py", "b_step.py"]


def test_missing_default_folders_are_fine_but_a_configured_one_is_warned_about(
    tmp_path: Path,
) -> None:
    assert discover_steps(tmp_path) == ([], [])
    steps, diagnostics = discover_steps(tmp_path, ["flows"])
    assert steps == []
    assert diagnostics[0].severity is Severity.WARNING
    assert "step folder 'flows' does not exist" in diagnostics[0].message
    assert "[steps] folders in wayang.toml" in diagnostics[0].message


# --- a Motia project ---------------------------------------------------------------------------


def test_a_motia_project_loads(shop: Path) -> None:
    steps, diagnostics = discover_steps(shop)
    assert diagnostics == []
    named = by_name(steps)
    assert sorted(named) == [
        "Audit",
        "Cleanup",
        "CreateOrder",
        "Greet",
        "Hello",
        "Log",
        "ManualReview",
        "Notify",
        "ProcessOrder",
    ]
    process = named["ProcessOrder"]
    assert str(process.where) == "steps/orders/process_order.step.py:3"
    assert process.emits[1] == Emit("order.flagged", "suspicious", True)
    assert named["CreateOrder"].method == "POST"
    assert named["CreateOrder"].body_schema is not None
    assert named["Notify"].handler_style == "model"
    assert not named["Notify"].handler_is_async
    assert named["Cleanup"].cron == "*/5 * * * *"
    assert named["ManualReview"].handler is None


def test_step_files_import_the_projects_own_modules(shop: Path) -> None:
    steps, _ = discover_steps(shop)
    handler = by_name(steps)["ProcessOrder"].handler
    assert handler is not None
    assert handler.__globals__["price_of"]({"items": [{"qty": 2}]}) == 5.0
    assert str(shop.resolve()) in sys.path


def test_decorated_steps_several_to_a_file(shop: Path) -> None:
    steps, _ = discover_steps(shop)
    named = by_name(steps)
    assert [s.name for s in steps if s.where.file.name == "greetings_step.py"] == [
        "Hello",
        "Greet",
        "Log",
    ]
    hello, greet = named["Hello"], named["Greet"]
    assert (hello.type, hello.method, hello.path, hello.where.line) == ("api", "POST", "/hello", 10)
    assert greet.subscribes == ("greet",) and greet.emits == (Emit("greeted", "done"),)
    assert greet.retry.attempts == 5 and greet.retry.delay_s == 2.0
    assert greet.handler_style == "model" and greet.where.line == 16
    assert named["Log"].handler is not None and not named["Log"].handler_is_async


def test_modules_are_registered_and_dropped_on_close(shop: Path) -> None:
    loader = StepLoader(shop)
    loader.load()
    modules = [loaded.module for loaded in loader.files.values()]
    assert len(modules) == 7 and all(name in sys.modules for name in modules)
    assert len(set(modules)) == 7 and all(name.startswith(MODULE_PREFIX) for name in modules)
    loader.close()
    assert not any(name in sys.modules for name in modules)


# --- both forms give the same step -------------------------------------------------------------


def comparable(step: StepDef) -> dict[str, object]:
    skip = {"where", "handler", "config", "input", "body_schema"}
    return {f.name: getattr(step, f.name) for f in dataclasses.fields(step) if f.name not in skip}


def test_helpers_and_config_dicts_give_the_same_step_def(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/motia.step.py",
        """\
        config = {
            "type": "api",
            "name": "Create",
            "path": "/orders/:id",
            "method": "POST",
            "emits": ["order.created", {"topic": "audit", "label": "log"}],
            "flows": ["orders"],
            "description": "make one",
            "virtualSubscribes": ["x"],
        }


        async def handler(req, ctx):
            pass
        """,
    )
    write(
        tmp_path,
        "steps/typed_step.py",
        """\
        from wayang.steps import http, step, topic


        @step(
            name="Create2",
            trigger=http("POST", "/orders/:id"),
            emits=["order.created", topic("audit", label="log")],
            flows=["orders"],
            description="make one",
            virtual_subscribes=["x"],
        )
        async def create(req, ctx):
            pass
        """,
    )
    steps, _ = discover_steps(tmp_path)
    first, second = steps
    assert comparable(first) | {"name": "Create2"} == comparable(second)


def test_helper_steps_get_the_same_diagnostics(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/bad_step.py",
        """\
        from wayang.steps import cron, noop, step

        review = noop(name="Review", virtual_emits=["reviewed"])


        @step(name="Tick", trigger=cron("* * * *"), subscribes=["x"])
        async def tick(ctx):
            pass
        """,
    )
    steps, diagnostics = discover_steps(tmp_path)
    assert [s.name for s in steps] == ["Review"]
    assert steps[0].where.line == 3
    assert [(d.line, d.severity.value, d.code) for d in diagnostics] == [
        (6, "warning", "step-key"),
        (6, "error", "step-cron"),
    ]
    assert "'subscribes' is a key of event steps, not of cron steps" in diagnostics[0].message


def test_a_decorated_step_imported_from_another_file_is_not_counted_twice(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/helpers_lib.py",
        """\
        from wayang.steps import step


        @step(name="Shared", subscribes=["s"])
        def shared(input, ctx):
            pass
        """,
    )
    write(
        tmp_path,
        "steps/user_step.py",
        "from steps.helpers_lib import shared\n" + EVENT.format(name="User", topic="u", value=1),
    )
    steps, diagnostics = discover_steps(tmp_path)
    assert [s.name for s in steps] == ["User"]
    assert diagnostics == []


def test_the_config_line_is_found_in_the_text(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/a.step.py",
        '"""Doc."""\n\nimport os\n\nconfig_name = "x"\nconfig: dict = {"type": "event",\n'
        '  "name": "A", "subscribes": ["t"]}\n\n\ndef handler(input, ctx):\n    pass\n',
    )
    steps, _ = discover_steps(tmp_path)
    assert steps[0].where.line == 6


# --- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("import os\n\nx = undefined_name\n", 3, "NameError: name 'undefined_name' is not defined"),
        ("def f(:\n    pass\n", 1, "SyntaxError"),
        ("\nimport not_a_module_anywhere\n", 2, "No module named 'not_a_module_anywhere'; install"),
        ("raise SystemExit(3)\n", 1, "SystemExit: 3"),
        ("def boom():\n    1 / 0\n\n\nboom()\n", 2, "ZeroDivisionError: division by zero"),
        ("import json\n\njson.loads('{')\n", 3, "JSONDecodeError: Expecting property name"),
    ],
)
def test_an_import_failure_is_an_error_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, words: str
) -> None:
    write(tmp_path, "steps/broken.step.py", text)
    steps, diagnostics = discover_steps(tmp_path)
    assert steps == []
    [diagnostic] = diagnostics
    assert (diagnostic.file, diagnostic.line, diagnostic.code) == (
        "steps/broken.step.py",
        line,
        "step-import",
    )
    assert diagnostic.message.startswith("cannot import this step file: ")
    assert words in diagnostic.message
    assert "raised at" not in diagnostic.message  # library internals are not named
    assert capsys.readouterr() == ("", "")
    assert not any(name.startswith(MODULE_PREFIX + "steps_broken") for name in sys.modules)


def test_a_failure_in_an_imported_module_points_at_the_import_and_names_the_origin(
    tmp_path: Path,
) -> None:
    write(tmp_path, "src/helper_bad.py", "VALUE = 1\nraise RuntimeError('no database')\n")
    write(tmp_path, "steps/uses.step.py", "import os\nfrom src.helper_bad import VALUE\n")
    _, [diagnostic] = discover_steps(tmp_path)
    assert diagnostic.line == 2
    assert "RuntimeError: no database (raised at src/helper_bad.py:2)" in diagnostic.message


def test_a_file_declaring_nothing_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "steps/empty.step.py", "x = 1\n")
    _, [diagnostic] = discover_steps(tmp_path)
    assert diagnostic.format().startswith(
        "steps/empty.step.py:1:1: error: this step file declares no step: export 'config'"
    )


def test_a_config_without_handler_points_at_the_config(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/a.step.py",
        "\n\nconfig = {'type': 'event', 'name': 'A', 'subscribes': ['t']}\n",
    )
    _, [diagnostic] = discover_steps(tmp_path)
    assert (diagnostic.line, diagnostic.code) == (3, "step-handler")


def test_a_bad_handler_signature_points_at_the_def(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/a.step.py",
        EVENT.format(name="A", topic="t", value=1).replace("handler(input, ctx)", "handler(input)"),
    )
    _, [diagnostic] = discover_steps(tmp_path)
    assert (diagnostic.line, diagnostic.code) == (9, "step-signature")


def test_load_step_file_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "steps/a.step.py", EVENT.format(name="A", topic="t", value=1))
    loaded = load_step_file(path, tmp_path)
    assert [s.name for s in loaded.steps] == ["A"]
    assert loaded.path == path.resolve() and loaded.module in sys.modules


# --- reloading ---------------------------------------------------------------------------------


async def call(step: StepDef) -> object:
    assert step.handler is not None
    return await step.handler({}, None)


def test_reload_picks_up_changed_new_and_deleted_files(tmp_path: Path) -> None:
    a = write(tmp_path, "steps/a.step.py", EVENT.format(name="A", topic="t", value=1))
    b = write(tmp_path, "steps/b.step.py", EVENT.format(name="B", topic="t", value=1))
    loader = StepLoader(tmp_path)
    steps, _ = loader.load()
    assert [s.name for s in steps] == ["A", "B"]
    old_b = loader.files[b.resolve()]

    a.write_text(EVENT.format(name="A2", topic="t", value=2))
    write(tmp_path, "steps/c/c.step.py", EVENT.format(name="C", topic="t", value=3))
    steps, _ = loader.reload([a])
    assert [s.name for s in steps] == ["A2", "B", "C"]
    assert loader.files[b.resolve()] is old_b  # untouched files are not re-imported

    b.unlink()
    a.write_text("this is not python\n")
    steps, diagnostics = loader.reload([a, b])
    assert [s.name for s in steps] == ["C"]
    assert diagnostics[0].code == "step-import" and diagnostics[0].file == "steps/a.step.py"

    kept = dict(loader.files)
    c = tmp_path / "steps/c/c.step.py"
    c.unlink()
    steps, _ = loader.reload([c])
    assert steps == []
    assert loader.files == {a.resolve(): kept[a.resolve()]}  # a deletion re-imports nothing
    loader.close()


def test_a_changed_project_module_reloads_every_step(tmp_path: Path) -> None:
    module = write(tmp_path, "src/helper_values.py", "VALUE = 1\n")
    text = "from src.helper_values import VALUE\n" + EVENT.format(name="A", topic="t", value=0)
    write(tmp_path, "steps/a.step.py", text.replace("return 0", "return VALUE"))
    loader = StepLoader(tmp_path)
    steps, _ = loader.load()
    assert asyncio.run(call(steps[0])) == 1
    module.write_text("VALUE = 2\n")
    steps, _ = loader.reload([module])
    assert asyncio.run(call(steps[0])) == 2
    loader.close()


# --- speed -------------------------------------------------------------------------------------


def test_two_thousand_step_files_load_quickly(tmp_path: Path) -> None:
    for index in range(2000):
        text = EVENT.format(name=f"Step{index}", topic=f"t{index % 50}", value=index)
        if index % 2:
            text = text.replace(
                '"emits": [],',
                f'"emits": [],\n    "input": {{"type": "object", "required": ["n{index}"]}},',
            )
        write(tmp_path, f"steps/group{index % 40}/s{index}.step.py", text)
    started = time.perf_counter()
    loader = StepLoader(tmp_path)
    steps, diagnostics = loader.load()
    elapsed = time.perf_counter() - started
    print(f"\n2000 step files (1000 with distinct JSON Schemas) loaded in {elapsed:.3f}s")
    assert len(steps) == 2000 and diagnostics == []
    loader.close()
