"""Every kind of mistake in a workflow.toml gets a precise file:line:col diagnostic."""

from __future__ import annotations

import pytest

from wayang.errors import DefinitionError, UsageError
from wayang.model.loader import MAX_FILE_BYTES, load_workflow, parse_workflow
from wf_helpers import diagnose, load

HEAD = 'id = "w"\n'


def test_toml_syntax_error_points_at_line_and_column() -> None:
    [line] = diagnose('id = "w"\n[steps.a]\nrun = "x\n')
    assert line.startswith("workflow.toml:3:") and "invalid TOML" in line


def test_duplicate_key_is_a_toml_error() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\nrun = "y"\n')
    assert line.startswith("workflow.toml:4:") and "invalid TOML" in line


def test_not_utf8_names_the_byte_and_position() -> None:
    [line] = diagnose(b'id = "w"\nname = "caf\xe9"\n')
    assert line == (
        "workflow.toml:2:12: error: the file is not UTF-8 text (byte 0xe9); save it as UTF-8"
    )


def test_unknown_top_level_key_suggests_the_right_one() -> None:
    [line] = diagnose(HEAD + 'descripton = "x"\n[steps.a]\nrun = "x"\n')
    assert line == (
        "workflow.toml:2:1: error: unknown key 'descripton' at the top level; "
        "did you mean 'description'?"
    )


def test_unknown_step_key_suggests_the_right_one() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\nneds = []\n')
    assert line == (
        "workflow.toml:4:1: error: unknown key 'neds' in steps.a; did you mean 'needs'?"
    )


def test_key_of_another_kind_says_which_kind() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\ntopic = "t"\n')
    assert "'topic' belongs to event steps; set kind = \"event\"" in line


def test_missing_id() -> None:
    [line] = diagnose('[steps.a]\nrun = "x"\n')
    assert line == "workflow.toml:1:1: error: (top level): missing required key 'id'"


def test_no_steps() -> None:
    [line] = diagnose(HEAD)
    assert line.startswith("workflow.toml:1:1: error:") and "steps" in line


def test_invalid_ids_explain_the_rule() -> None:
    lines = diagnose('id = "My Flow"\n[steps."bad id"]\nrun = "x"\n')
    assert lines[0] == (
        "workflow.toml:1:6: error: id: 'My Flow' is not valid: use lowercase letters, digits, "
        "'.', '_' and '-', starting with a letter or digit"
    )
    assert lines[1].startswith("workflow.toml:2:8: error: invalid step id 'bad id'")


def test_version_must_be_semver() -> None:
    [line] = diagnose(HEAD + 'version = "1.0"\n[steps.a]\nrun = "x"\n')
    assert "use a semantic version such as '1.2.0'" in line


def test_wrong_types_say_what_was_expected() -> None:
    lines = diagnose(HEAD + "tags = 3\n[steps.a]\nrun = 5\ncontinue_on_error = 'yes'\n")
    assert "workflow.toml:2:8: error: tags: expected an array, got integer 3" in lines
    assert "workflow.toml:4:7: error: steps.a.run: expected a string, got integer 5" in lines
    assert any(
        line.startswith("workflow.toml:5:21: error: steps.a.continue_on_error") for line in lines
    )


def test_literal_choices_with_suggestion() -> None:
    [line] = diagnose(HEAD + '[parameters.p]\ntype = "strng"\n[steps.a]\nrun = "x"\n')
    assert line.endswith("(got 'strng'); did you mean 'string'?")
    assert line.startswith("workflow.toml:3:8:")


def test_task_needs_run_or_uses() -> None:
    [line] = diagnose(HEAD + "[steps.a]\n")
    assert line.startswith("workflow.toml:2:8: error: steps.a: a task step needs 'run'")


def test_run_and_uses_conflict() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\nuses = "python:m:f"\n')
    assert "a step has 'run' or 'uses', not both" in line


def test_bad_python_reference() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nuses = "python:m"\n')
    assert "write a Python function as 'python:package.module:function'" in line


def test_durations() -> None:
    lines = diagnose(HEAD + '[steps.a]\nrun = "x"\ntimeout = "5 minutes"\n')
    assert lines == [
        "workflow.toml:4:11: error: steps.a.timeout: invalid duration '5 minutes': write a "
        "number with a unit, such as '500ms', '30s', '5m', '1h30m', '7d' or '2w'"
    ]
    assert load(HEAD + '[steps.a]\nrun = "x"\ntimeout = "1h30m"\n').steps["a"].timeout == 5400


def test_retry_rules() -> None:
    lines = diagnose(HEAD + '[steps.a]\nrun = "x"\nretry = { attempts = 0, backoff = "linear" }\n')
    assert lines[0].startswith("workflow.toml:4:22: error: steps.a.retry.attempts")
    assert "(got 'linear')" in lines[1]


def test_unknown_kind_suggests() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nkind = "aproval"\n')
    assert line == (
        "workflow.toml:3:8: error: steps.a: unknown step kind 'aproval'; did you mean 'approval'?"
    )


def test_needs_unknown_step_and_self() -> None:
    lines = diagnose(
        HEAD + '[steps.build]\nrun = "x"\n[steps.b]\nrun = "x"\nneeds = ["biuld", "b"]\n'
    )
    assert lines == [
        "workflow.toml:6:10: error: unknown step 'biuld'; did you mean 'build'?",
        "workflow.toml:6:19: error: step 'b' cannot depend on itself",
    ]


def test_cycle_is_named() -> None:
    text = HEAD + (
        '[steps.a]\nrun = "x"\nneeds = ["c"]\n'
        '[steps.b]\nrun = "x"\nneeds = ["a"]\n'
        '[steps.c]\nrun = "x"\nneeds = ["b"]\n'
    )
    [line] = diagnose(text)
    assert "dependency cycle: a → b → c → a" in line


def test_needs_listed_twice() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\n[steps.b]\nrun = "y"\nneeds = ["a", "a"]\n')
    assert "'a' is listed twice" in line


def test_graph_errors_reported_with_shape_errors() -> None:
    lines = diagnose(HEAD + '[steps.a]\nrun = "x"\nneeds = ["zz"]\ntimeout = "x"\n')
    assert any("unknown step 'zz'" in line for line in lines)
    assert any("invalid duration" in line for line in lines)


def test_expression_syntax_error_column() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\nwhen = "params.x == "\n')
    assert line.startswith("workflow.toml:4:")
    assert "steps.a.when: invalid expression" in line


def test_template_expression_error_column() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "echo ${{ 1 + }}"\n')
    assert line.startswith("workflow.toml:3:")
    assert "steps.a.run: invalid expression" in line


def test_unknown_parameter_in_expression_points_inside_the_string() -> None:
    text = HEAD + '[parameters.who]\n[steps.a]\nrun = "echo ${{ params.whom }}"\n'
    assert diagnose(text) == [
        "workflow.toml:4:17: error: unknown parameter 'whom'; did you mean 'who'?"
    ]


def test_reading_a_step_that_is_not_an_ancestor() -> None:
    text = HEAD + '[steps.a]\nrun = "x"\n[steps.b]\nrun = "echo ${{ steps.a.outputs.v }}"\n'
    [line] = diagnose(text)
    assert line == (
        "workflow.toml:5:17: error: step 'b' reads steps.a but does not come after it; "
        'add "a" to its needs'
    )


def test_indirect_ancestor_is_fine() -> None:
    load(
        HEAD + '[steps.a]\nrun = "x"\n[steps.b]\nrun = "x"\nneeds = ["a"]\n'
        '[steps.c]\nneeds = ["b"]\nwhen = "steps.a.status == \'succeeded\'"\nrun = "x"\n'
    )


def test_step_reference_problems() -> None:
    text = HEAD + (
        '[steps.a]\nrun = "echo ${{ steps.a.outputs.x }} ${{ steps.zz }}"\n'
        '[steps.b]\nneeds = ["a"]\nrun = "echo ${{ steps.a.output.x }}"\n'
    )
    lines = diagnose(text)
    assert "step 'a' cannot read its own outputs or status" in lines[0]
    assert "unknown step 'zz'" in lines[1]
    assert "steps.a has no 'output'; use steps.a.outputs.<key> or .status" in lines[2]


def test_unknown_root_name_and_run_fields() -> None:
    lines = diagnose(HEAD + '[steps.a]\nrun = "echo ${{ parms.x }} ${{ run.idd }}"\n')
    assert "unknown name 'parms'; did you mean 'params'?" in lines[0]
    assert "run has no 'idd'; did you mean 'id'?" in lines[1]


def test_event_name_only_in_event_steps() -> None:
    ok = HEAD + '[steps.a]\nkind = "event"\ntopic = "t"\ncorrelate = "event.id == 1"\n'
    load(ok)
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\nwhen = "event.id == 1"\n')
    assert "unknown name 'event'" in line


def test_parameter_rules() -> None:
    text = HEAD + (
        '[parameters.env]\ntype = "string"\ndefault = "qa"\nenum = ["dev", "prod"]\n'
        '[parameters.n]\ntype = "integer"\ndefault = "3"\n'
        '[parameters.tag]\npattern = "v[0-9]+"\ndefault = "x1"\n'
        '[parameters.r]\nrequired = true\ndefault = "a"\n'
        '[parameters.bad]\npattern = "("\n'
        '[parameters.num]\ntype = "integer"\npattern = "1"\n'
        '[steps.a]\nrun = "x"\n'
    )
    lines = diagnose(text)
    assert 'workflow.toml:4:11: error: default "qa" is not one of "dev", "prod"' in lines
    assert 'workflow.toml:8:11: error: default must be an integer, got "3"' in lines
    assert "workflow.toml:11:11: error: default 'x1' does not match the pattern 'v[0-9]+'" in lines
    assert any(
        line.startswith("workflow.toml:13:1: error: a required parameter cannot") for line in lines
    )
    assert any("invalid regular expression" in line for line in lines)


def test_enum_values_checked_against_type() -> None:
    text = HEAD + '[parameters.n]\ntype = "integer"\nenum = [1, "two"]\n[steps.a]\nrun = "x"\n'
    assert diagnose(text) == ['workflow.toml:4:12: error: enum value must be an integer, got "two"']


def test_actions_resolve_and_inputs_checked() -> None:
    text = HEAD + (
        '[actions.lint]\nrun = "ruff ${{ inputs.path }} ${{ inputs.nope }}"\n'
        "inputs.path = { required = true }\n"
        '[steps.a]\nuses = "lnt"\n'
        '[steps.b]\nuses = "lint"\ninputs = { pth = "src" }\n'
    )
    lines = diagnose(text)
    assert "unknown input 'nope'" in lines[0]
    assert "unknown action 'lnt'; did you mean 'lint'?" in lines[1]
    assert any("action 'lint' has no input 'pth'; did you mean 'path'?" in line for line in lines)
    assert any("action 'lint' needs input 'path'" in line for line in lines)


def test_action_needs_run_or_uses_and_python_only() -> None:
    lines = diagnose(HEAD + '[actions.x]\n[actions.y]\nuses = "other"\n[steps.a]\nrun = "x"\n')
    assert "actions.x: an action needs 'run' or 'uses'" in lines[0]
    assert "an action's 'uses' must be 'python:package.module:function'" in lines[1]


def test_actions_cannot_read_steps() -> None:
    [line] = diagnose(
        HEAD + '[actions.x]\nrun = "${{ steps.a.outputs.v }}"\n[steps.a]\nrun = "x"\n'
    )
    assert "unknown name 'steps'" in line


def test_artifact_paths_stay_in_workspace() -> None:
    lines = diagnose(
        HEAD
        + '[artifacts.a]\npath = "/etc/*"\n[artifacts.b]\npath = "../x"\n[steps.s]\nrun = "x"\n'
    )
    assert len(lines) == 2 and all("inside the workspace" in line for line in lines)


def test_compensation_rules() -> None:
    lines = diagnose(
        HEAD + '[steps.a]\nrun = "x"\ncompensate = "a"\n[steps.b]\nrun = "x"\ncompensate = "zz"\n'
    )
    assert "a step cannot compensate itself" in lines[0]
    assert "unknown compensation step 'zz'" in lines[1]
    text = HEAD + (
        '[steps.a]\nrun = "x"\ncompensate = "undo"\n[steps.undo]\nrun = "x"\n'
        '[steps.b]\nrun = "x"\nneeds = ["undo"]\n'
    )
    [line] = diagnose(text)
    assert "is a compensation step" in line


def test_node_kind_rules() -> None:
    text = HEAD + (
        '[steps.ap]\nkind = "approval"\nassignees = ["a"]\nquorum = 2\n'
        '[steps.ap2]\nkind = "approval"\nassignees = ["a"]\non_timeout = "escalate"\n'
        '[steps.t]\nkind = "timer"\n'
        '[steps.t2]\nkind = "timer"\nfor = "1h"\nuntil = "true"\n'
        '[steps.d]\nkind = "decision"\ncases = [{ when = "true", next = "nowhere" }]\n'
        '[steps.ag]\nkind = "agent"\nmodel = "m"\n'
        '[steps.ev]\nkind = "event"\ntopic = "bad topic"\n'
        '[steps.sw]\nkind = "subworkflow"\n'
    )
    lines = diagnose(text)
    joined = "\n".join(lines)
    assert "quorum 2 cannot be reached with 1 assignee(s)" in joined
    assert "on_timeout = 'escalate' needs 'escalate_to'" in joined
    assert "a timer needs 'for' (a duration) or 'until'" in joined
    assert "a timer has 'for' or 'until', not both" in joined
    assert "unknown step 'nowhere'" in joined
    assert "steps.ag: missing required key 'prompt'" in joined
    assert "steps.ev.topic" in joined
    assert "steps.sw: missing required key 'workflow'" in joined


def test_diagnostics_are_sorted_by_position() -> None:
    lines = diagnose(HEAD + "[steps.b]\nrun = 1\n[steps.a]\nrun = 2\nbad = 1\n")
    positions = [tuple(int(p) for p in line.split(":")[1:3]) for line in lines]
    assert positions == sorted(positions)


def test_limits_file_size() -> None:
    [line] = diagnose(b"#" * (MAX_FILE_BYTES + 1))
    assert "the limit is" in line


def test_limits_nesting_and_integers() -> None:
    lines = diagnose(HEAD + "tags = " + "[" * 40 + "]" * 40 + '\n[steps.a]\nrun = "x"\n')
    assert any("nested" in line for line in lines)
    [line] = diagnose(HEAD + "x = 99999999999999999999\n")
    assert "integer does not fit in 64 bits" in line
    [line] = diagnose(HEAD + "x = 1" + "0" * 5000 + "\n")
    assert "64 bits" in line


def test_very_deep_nesting_does_not_crash() -> None:
    lines = diagnose(HEAD + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert lines and all(line.startswith("workflow.toml:") for line in lines)


def test_ten_thousand_steps_parse() -> None:
    parts = [HEAD]
    for index in range(10_000):
        needs = f'needs = ["s{index - 1}"]\n' if index else ""
        parts.append(f'[steps.s{index}]\nrun = "echo {index}"\n{needs}')
    workflow = parse_workflow("".join(parts))
    assert len(workflow.steps) == 10_000


def test_load_workflow_file_errors(tmp_path: object) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    with pytest.raises(UsageError, match="no such file; create one with 'wayang init'"):
        load_workflow(base / "missing.toml")
    with pytest.raises(UsageError, match="is a directory"):
        load_workflow(base)
    (base / "w.toml").write_text('id = "x"\n[steps.a]\nrun = 1\n')
    with pytest.raises(DefinitionError) as caught:
        load_workflow(base / "w.toml")
    assert caught.value.diagnostics[0].file == str(base / "w.toml")


def test_jitter_has_one_clear_rule() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\nretry = { jitter = 1.5 }\n')
    assert line.endswith(
        "steps.a.retry.jitter: jitter is true, false or a number from 0 to 1 (got 1.5)"
    )


def test_each_bad_input_expression_is_reported_where_it_is() -> None:
    lines = diagnose(
        HEAD + '[steps.a]\nrun = "x"\ninputs = { y = "${{ 1 + 2 }}", z = "${{ 3 * 4 }}" }\n'
    )
    assert [line.split(": error: ")[0] for line in lines] == [
        "workflow.toml:4:23",
        "workflow.toml:4:43",
    ]
    assert "steps.a.inputs.y" in lines[0] and "steps.a.inputs.z" in lines[1]


def test_inputs_cannot_read_inputs_and_event_only_in_correlate() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\ninputs = { a = "1", b = "${{ inputs.a }}" }\n')
    assert "unknown name 'inputs'" in line
    text = HEAD + '[steps.a]\nkind = "event"\ntopic = "t"\nenv = { K = "${{ event.id }}" }\n'
    [line] = diagnose(text)
    assert "unknown name 'event'" in line


def test_action_input_defaults_are_plain_values() -> None:
    [line] = diagnose(
        HEAD + '[actions.x]\nrun = "y"\ninputs.v = "${{ params.n }}"\n[steps.a]\nuses = "x"\n'
    )
    assert "an action input's default is a plain value" in line


def test_hints_read_cleanly() -> None:
    lines = diagnose(
        HEAD
        + '[actions.greet]\nrun = "x"\n[steps.a]\nuses = "gret"\n[steps.b]\nrun = "${{ run.idd }}"\n'
    )
    assert all("?;" not in line for line in lines)
    assert lines[0].endswith("unknown action 'gret'; did you mean 'greet'?")


def test_step_ids_with_double_hyphens_can_be_read() -> None:
    load(
        HEAD
        + '[steps.a--0]\nrun = "x"\n[steps.b]\nneeds = ["a--0"]\nrun = "${{ steps.a--0.outputs.v }}"\n'
    )


def test_a_policy_engine_belongs_to_the_project_policy() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\n[policy]\nengine = "opa"\n')
    assert line.startswith("workflow.toml:5:1: error: 'engine' is a project setting")
    assert "wayang.policy.toml" in line


def test_emit_reads_outputs_but_not_inputs_and_checks_its_topic() -> None:
    step = HEAD + '[steps.a]\nrun = "x"\ninputs = { n = 1 }\n'
    ok = step + '[[steps.a.emit]]\ntopic = "done"\ndata = { n = "${{ outputs.n }}" }\n'
    load(ok)
    [line] = diagnose(step + '[[steps.a.emit]]\ntopic = "done"\nkey = "${{ inputs.n }}"\n')
    assert line.startswith("workflow.toml:7:") and "unknown name 'inputs'" in line
    [line] = diagnose(step + '[[steps.a.emit]]\ntopic = "no spaces"\n')
    assert line.startswith("workflow.toml:6:") and "topic" in line
    [line] = diagnose(step + '[[steps.a.emit]]\ntopic = "t"\nwhen = "outputs.n >"\n')
    assert line.startswith("workflow.toml:7:")
    [line] = diagnose(step + "[[steps.a.emit]]\ndata = 1\n")
    assert "missing required key 'topic'" in line


def test_outputs_only_in_emit() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "echo ${{ outputs.n }}"\n')
    assert "unknown name 'outputs'" in line
