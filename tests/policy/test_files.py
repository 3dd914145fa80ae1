"""The project policy file: finding it, reading it, and file:line diagnostics for mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from wayang.errors import DefinitionError, UsageError
from wayang.policy import POLICY_FILENAME, find_policy_file, load_policy_file, parse_policy
from wayang.policy.files import parse_policy_cached


def diagnose(text: str | bytes) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_policy(text if isinstance(text, str) else text.decode("latin-1"), "p.toml")
    return [d.format() for d in caught.value.diagnostics]


GOOD = """\
max_parallel = 4
max_duration = "1h"
allowed_tools = ["git", "python3"]
allowed_env = ["PATH"]

[roles]
finance = ["carol"]

[[rules]]
name = "finance-approves"
action = "approve"
kinds = ["approval"]
require = "'finance' in actor.roles"
message = "finance must approve"

[[rules]]
name = "budget"
action = ["offer", "accept"]
when = "step.id == 'buy'"
require = "offer.terms.price <= 100 and params.limit != null and run.started_by != ''"
"""


# --- parsing -------------------------------------------------------------------------------------


def test_a_good_file_parses() -> None:
    policy = parse_policy(GOOD, "p.toml")
    assert policy.max_parallel == 4
    assert policy.max_duration == 3600.0
    assert policy.roles == {"finance": ["carol"]}
    assert [r.name for r in policy.rules] == ["finance-approves", "budget"]
    assert policy.rules[1].action == ["offer", "accept"]


def test_an_empty_file_is_an_empty_policy() -> None:
    policy = parse_policy("# nothing yet\n", "p.toml")
    assert policy.rules == [] and policy.allowed_tools is None


def test_engine_is_read() -> None:
    assert parse_policy('engine = "opa"\n', "p.toml").engine == "opa"


def test_unknown_top_level_key_suggests_a_policy_key() -> None:
    [line] = diagnose("max_paralel = 2\n")
    assert line == (
        "p.toml:1:1: error: unknown key 'max_paralel' at the top level; "
        "did you mean 'max_parallel'?"
    )


def test_unknown_rule_key_suggests_a_rule_key() -> None:
    [line] = diagnose('[[rules]]\nname = "r"\naction = "start"\ndeny = true\nrequre = "true"\n')
    assert line == ("p.toml:5:1: error: unknown key 'requre' in rules[0]; did you mean 'require'?")


def test_wrong_type_names_the_line() -> None:
    [line] = diagnose('\nmax_parallel = "four"\n')
    assert line.startswith("p.toml:2:")
    assert "max_parallel: expected an integer, got string 'four'" in line


def test_a_bad_action_suggests_one() -> None:
    [line] = diagnose('[[rules]]\nname = "r"\naction = "exec"\ndeny = true\n')
    assert line.startswith("p.toml:3:")
    assert "did you mean 'execute'?" in line


def test_a_bad_expression_points_into_it() -> None:
    [line] = diagnose('[[rules]]\nname = "r"\naction = "start"\nrequire = "1 + 2"\n')
    assert line.startswith("p.toml:4:14: error: rules[0].require: invalid expression: ")
    assert "arithmetic is not supported" in line


def test_a_rule_needs_require_or_deny() -> None:
    [line] = diagnose('\n[[rules]]\nname = "r"\naction = "start"\n')
    assert line.startswith("p.toml:2:3: error: rules[0]: ")
    assert "a rule needs 'require' (an expression that must hold) or 'deny = true'" in line


def test_an_unknown_name_in_a_rule_is_reported_at_its_column() -> None:
    [line] = diagnose('[[rules]]\nname = "r"\naction = "start"\nrequire = "acter.name == \'x\'"\n')
    assert line == "p.toml:4:12: error: unknown name 'acter'; did you mean 'actor'?"


def test_unknown_names_list_the_roots_when_nothing_is_close() -> None:
    [line] = diagnose('[[rules]]\nname = "r"\naction = "start"\nwhen = "zzz"\ndeny = true\n')
    assert line.endswith(
        "unknown name 'zzz'; names here are params, env, run, steps, actor, step, offer, vote"
    )


def test_fields_of_actor_step_and_run_are_checked() -> None:
    text = (
        '[[rules]]\nname = "r"\naction = "start"\n'
        "require = \"actor.role == 'x' or step.name == 'y' or run.owner == 'z'\"\n"
    )
    lines = diagnose(text)
    assert len(lines) == 3
    assert "actor has no 'role'; did you mean 'roles'?" in lines[0]
    assert "step has no 'name'; use step.id, step.kind" in lines[1]
    assert "run has no 'owner'" in lines[2]
    assert all(line.startswith("p.toml:4:") for line in lines)


def test_every_problem_is_reported_in_file_order() -> None:
    lines = diagnose('max_parallel = 0\n[[rules]]\nname = "r"\naction = "start"\nbogus = 1\n')
    assert lines == [
        "p.toml:1:16: error: max_parallel: must be greater than or equal to 1 (got 0)",
        "p.toml:5:1: error: unknown key 'bogus' in rules[0]",
    ]


def test_invalid_toml_is_a_definition_error() -> None:
    [line] = diagnose("max_parallel = \n")
    assert line.startswith("p.toml:1:") and "invalid TOML" in line


def test_parsing_is_cached_by_text_and_filename() -> None:
    assert parse_policy_cached(GOOD, "p.toml") is parse_policy_cached(GOOD, "p.toml")


# --- loading -------------------------------------------------------------------------------------


def test_load_policy_file_returns_the_text_to_pin(tmp_path: Path) -> None:
    path = tmp_path / POLICY_FILENAME
    path.write_text(GOOD)
    assert load_policy_file(path) == (GOOD, str(path))


def test_load_policy_file_checks_the_file(tmp_path: Path) -> None:
    path = tmp_path / POLICY_FILENAME
    path.write_text("bogus = 1\n")
    with pytest.raises(DefinitionError, match=r"wayang\.policy\.toml:1:1: error: unknown key"):
        load_policy_file(path)


def test_load_policy_file_reports_non_utf8_with_a_position(tmp_path: Path) -> None:
    path = tmp_path / POLICY_FILENAME
    path.write_bytes(b'[roles]\nfinance = ["caf\xe9"]\n')
    with pytest.raises(DefinitionError, match=r":2:\d+: error: the file is not UTF-8"):
        load_policy_file(path)


def test_load_policy_file_missing_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such policy file"):
        load_policy_file(tmp_path / "nope.toml")


# --- finding ------------------------------------------------------------------------------------


def test_wayang_policy_wins(tmp_path: Path) -> None:
    chosen = tmp_path / "elsewhere.toml"
    chosen.write_text("")
    (tmp_path / POLICY_FILENAME).write_text("")
    assert find_policy_file(tmp_path, {"WAYANG_POLICY": str(chosen)}) == chosen


def test_wayang_policy_naming_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone.toml"
    with pytest.raises(UsageError) as caught:
        find_policy_file(tmp_path, {"WAYANG_POLICY": str(missing)})
    assert "WAYANG_POLICY" in str(caught.value) and str(missing) in str(caught.value)


def test_wayang_policy_naming_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a folder"):
        find_policy_file(tmp_path, {"WAYANG_POLICY": str(tmp_path)})


def test_an_empty_wayang_policy_is_unset(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    assert find_policy_file(tmp_path, {"WAYANG_POLICY": ""}) is None


def test_the_nearest_file_in_a_parent_is_found(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / POLICY_FILENAME).write_text("")
    nested = tmp_path / "team" / "service"
    nested.mkdir(parents=True)
    (tmp_path / "team" / POLICY_FILENAME).write_text("")
    assert find_policy_file(nested, {}) == (tmp_path / "team" / POLICY_FILENAME).resolve()
    assert find_policy_file(tmp_path, {}) == (tmp_path / POLICY_FILENAME).resolve()


def test_a_file_in_the_repository_root_is_found(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / POLICY_FILENAME).write_text("")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_policy_file(nested, {}) == (tmp_path / POLICY_FILENAME).resolve()


def test_the_search_stops_at_the_repository_root(tmp_path: Path) -> None:
    (tmp_path / POLICY_FILENAME).write_text("")  # outside the repository: not ours
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    nested = repo / "src"
    nested.mkdir()
    assert find_policy_file(nested, {}) is None


def test_a_git_file_marks_a_root_too(tmp_path: Path) -> None:
    (tmp_path / POLICY_FILENAME).write_text("")
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    (worktree / ".git").write_text("gitdir: /somewhere\n")  # worktrees and submodules
    assert find_policy_file(worktree, {}) is None


def test_starting_from_a_file_searches_its_folder(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / POLICY_FILENAME).write_text("")
    workflow = tmp_path / "workflow.toml"
    workflow.write_text("")
    assert find_policy_file(workflow, {}) == (tmp_path / POLICY_FILENAME).resolve()
