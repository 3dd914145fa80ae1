"""Property tests and a fuzz test: the parser and planner never fail in any other way."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wayang.errors import DefinitionError, PlanError
from wayang.model.loader import parse_workflow
from wayang.model.plan import plan_workflow

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*/workflow.toml"))
SEEDS = [path.read_bytes() for path in EXAMPLES]


def parse_or_diagnose(data: bytes | str) -> None:
    """Parsing either succeeds or raises DefinitionError with well-formed diagnostics."""
    try:
        parse_workflow(data, "fuzz.toml")
    except DefinitionError as exc:
        assert exc.diagnostics
        for item in exc.diagnostics:
            assert item.line >= 1 and item.column >= 1 and item.message
            assert item.format().startswith("fuzz.toml:")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_only_ever_give_diagnostics(data: bytes) -> None:
    parse_or_diagnose(data)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.binary(max_size=6)),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_examples_only_ever_give_diagnostics(
    seed: bytes, edits: list[tuple[int, int, bytes]]
) -> None:
    data = bytearray(seed)
    for position, length, replacement in edits:
        at = position % (len(data) + 1)
        data[at : at + length] = replacement
    parse_or_diagnose(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="[]{}=\"'.,\n #abcxyz${}0123-_:", max_size=400))
def test_toml_shaped_noise_only_ever_gives_diagnostics(text: str) -> None:
    parse_or_diagnose('id = "w"\n' + text)


step_ids = st.from_regex(r"[a-z]([a-z0-9_-]{0,7}[a-z0-9_])?", fullmatch=True)


@st.composite
def workflows(draw: st.DrawFn) -> tuple[str, dict[str, list[str]]]:
    """A random valid workflow: a DAG over random step ids (needs point only backwards)."""
    ids = draw(st.lists(step_ids, min_size=1, max_size=25, unique=True))
    graph: dict[str, list[str]] = {}
    lines = ['id = "generated"', "[parameters.p]", 'default = "v"']
    for index, step in enumerate(ids):
        earlier = ids[:index]
        needs = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        graph[step] = needs
        lines.append(f'[steps."{step}"]')
        lines.append(f"needs = {json.dumps(needs)}")
        reads = " ".join(f"${{{{ steps.{n}.outputs.x }}}}" for n in needs)
        lines.append(f"run = {json.dumps('echo ${{ params.p }} ' + reads)}")
    return "\n".join(lines) + "\n", graph


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflows())
def test_valid_generated_workflows_plan_in_dependency_order(
    generated: tuple[str, dict[str, list[str]]],
) -> None:
    text, graph = generated
    plan = plan_workflow(parse_workflow(text))
    order = [step.id for step in plan.steps]
    assert sorted(order) == sorted(graph)
    position = {step: index for index, step in enumerate(order)}
    for step, needs in graph.items():
        assert all(position[n] < position[step] for n in needs)
    for step in plan.steps:
        assert set(step.needs) == set(graph[step.id])
        assert (step.command is None) == bool(graph[step.id])  # reads outputs → deferred


@settings(max_examples=100, deadline=None)
@given(workflows(), st.data())
def test_a_dangling_reference_is_always_reported_where_it_is(
    generated: tuple[str, dict[str, list[str]]], data: st.DataObject
) -> None:
    text, _ = generated
    lines = text.splitlines()
    target = data.draw(
        st.sampled_from([i for i, line in enumerate(lines) if line.startswith("needs")])
    )
    lines[target] = 'needs = ["zz-missing"]'
    try:
        parse_workflow("\n".join(lines) + "\n", "w.toml")
    except DefinitionError as exc:
        found = [d for d in exc.diagnostics if "unknown step 'zz-missing'" in d.message]
        assert [(d.line, d.column) for d in found] == [(target + 1, 10)]
    else:
        raise AssertionError("a dangling needs reference was accepted")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4))
def test_any_parameter_text_plans_or_reports(params: dict[str, str]) -> None:
    workflow = parse_workflow(
        'id = "p"\n[parameters.n]\ntype = "integer"\ndefault = 1\n'
        '[parameters.s]\npattern = "[a-z]*"\n[parameters.o]\ntype = "object"\n'
        '[steps.a]\nrun = "echo ${{ params.n }} ${{ params.s }} ${{ params.o }}"\n'
    )
    try:
        plan_workflow(workflow, params, params_are_text=True)
    except PlanError as exc:
        assert all(d.file.startswith("--param ") for d in exc.diagnostics)
