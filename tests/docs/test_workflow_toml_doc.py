"""Keep docs/workflow-toml.md honest.

* Every ```toml block is a complete workflow that validates, and plans.
* Every ```toml invalid block is followed by a ```text block with exactly what
  ``wayang validate`` prints for it as ``workflow.toml``: one diagnostic per line, then the count
  (checked through ``parse_workflow`` and through the CLI, also with ``--json``).
* Every key of every spec model is named in the doc inside backticks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from wayang.cli.main import main
from wayang.errors import DefinitionError
from wayang.model import spec
from wayang.model.loader import parse_workflow
from wayang.model.plan import plan_workflow

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflow-toml.md"
FENCE = re.compile(r"^```(?P<info>.*)$")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$")
COUNT = re.compile(r"^(?P<n>\d+) errors?$")


@dataclass(frozen=True)
class Block:
    """One fenced block of the doc."""

    info: str
    text: str
    line: int  # of the opening fence, 1-based
    heading: str


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "top"


def read_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in order, each with the heading it sits under."""
    blocks: list[Block] = []
    heading, opened, info, body = "top", 0, "", []
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if opened:
            if line == "```":
                blocks.append(Block(info, "".join(body), opened, heading))
                opened = 0
            else:
                body.append(line + "\n")
        elif fence:
            opened, info, body = number, fence.group("info").strip(), []
        elif match := HEADING.match(line):
            heading = _slug(match.group("title"))
    assert not opened, f"the fence opened at line {opened} is never closed"
    return blocks


@dataclass(frozen=True)
class Example:
    """A toml block and, for a broken one, the output documented for it."""

    block: Block
    expected: tuple[str, ...] | None  # None: the block must validate


def read_examples() -> list[Example]:
    blocks = read_blocks(DOC.read_text(encoding="utf-8"))
    examples = []
    for index, block in enumerate(blocks):
        if block.info == "toml":
            examples.append(Example(block, None))
        elif block.info == "toml invalid":
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            assert following is not None and following.info == "text", (
                f"line {block.line}: a ```toml invalid block must be followed by a ```text block"
            )
            assert _only_blank_between(block, following), (
                f"line {block.line}: nothing but blank lines may separate a ```toml invalid "
                "block from its ```text block"
            )
            examples.append(Example(block, tuple(following.text.splitlines())))
        else:
            assert not block.info.startswith("toml"), f"line {block.line}: unknown fence"
    return examples


def _only_blank_between(block: Block, following: Block) -> bool:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    end = block.line + block.text.count("\n")  # the closing fence, 0-based index + 1
    return all(not line.strip() for line in lines[end + 1 : following.line - 1])


EXAMPLES = read_examples()
VALID = [e for e in EXAMPLES if e.expected is None]
INVALID = [e for e in EXAMPLES if e.expected is not None]


def _ids(examples: list[Example]) -> list[str]:
    return [f"{e.block.heading}-{index}@L{e.block.line}" for index, e in enumerate(examples)]


def _diagnostic_lines(text: str) -> list[str]:
    try:
        parse_workflow(text, "workflow.toml")
    except DefinitionError as exc:
        return [d.format() for d in exc.diagnostics]
    return []


def test_the_doc_has_examples_of_both_kinds() -> None:
    assert len(VALID) >= 20
    assert len(INVALID) >= 5


@pytest.mark.parametrize("example", VALID, ids=_ids(VALID))
def test_valid_example_validates(example: Example) -> None:
    problems = _diagnostic_lines(example.block.text)
    assert problems == [], f"doc line {example.block.line}: the example does not validate"


# A value for each required parameter of an example, by type (the doc's patterns accept these).
SAMPLE_VALUES = {"string": "v1.2.3", "path": "v1.2.3", "integer": 1, "number": 1, "boolean": True}


@pytest.mark.parametrize("example", VALID, ids=_ids(VALID))
def test_valid_example_plans(example: Example) -> None:
    workflow = parse_workflow(example.block.text, "workflow.toml")
    params = {
        name: SAMPLE_VALUES.get(parameter.type, [])
        for name, parameter in workflow.parameters.items()
        if parameter.required
    }
    plan = plan_workflow(workflow, params, environ={})
    assert {step.id for step in plan.steps} == set(workflow.steps)


@pytest.mark.parametrize("example", INVALID, ids=_ids(INVALID))
def test_invalid_example_gives_documented_diagnostics(example: Example) -> None:
    assert example.expected is not None
    *documented, count = example.expected
    summary = COUNT.match(count)
    assert summary, f"doc line {example.block.line}: the output must end with 'N error(s)'"
    assert int(summary.group("n")) == len(documented)
    assert summary.group(0) == f"{len(documented)} error{'s' if len(documented) != 1 else ''}"
    assert documented, f"doc line {example.block.line}: a broken example needs a diagnostic"
    assert _diagnostic_lines(example.block.text) == documented


@pytest.mark.parametrize("example", INVALID, ids=_ids(INVALID))
def test_invalid_example_output_is_what_the_cli_prints(
    example: Example,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "workflow.toml").write_text(example.block.text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    status = main(["--no-color", "validate", "workflow.toml"])
    captured = capsys.readouterr()
    assert status == 2
    assert tuple(captured.err.splitlines()) == example.expected

    status = main(["validate", "--json", "workflow.toml"])
    report = json.loads(capsys.readouterr().out)
    assert status == 2
    assert report["valid"] is False
    assert report["file"] == "workflow.toml"
    for item in report["diagnostics"]:
        assert set(item) == {"file", "line", "column", "severity", "code", "message"}
    lines = [
        f"{d['file']}:{d['line']}:{d['column']}: {d['severity']}: {d['message']}"
        for d in report["diagnostics"]
    ]
    assert tuple(lines) == example.expected[:-1]


def _spec_models() -> list[type[BaseModel]]:
    return [
        value
        for value in vars(spec).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == spec.__name__
    ]


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def test_every_spec_model_is_inspected() -> None:
    names = {model.__name__ for model in _spec_models()}
    assert {"Workflow", "Parameter", "Retry", "TaskStep", "TimerStep", "DecisionCase"} <= names


@pytest.mark.parametrize("model", _spec_models(), ids=lambda model: model.__name__)
def test_every_key_is_documented(model: type[BaseModel]) -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [key for key in _keys(model) if f"`{key}`" not in text]
    assert not missing, f"{model.__name__}: keys not named in backticks in {DOC.name}: {missing}"
