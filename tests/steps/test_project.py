"""wayang.toml: optional, found upward from a folder, every problem reported at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from wayang.errors import DefinitionError, UsageError
from wayang.steps.project import (
    ProjectConfig,
    find_project_root,
    load_project,
    parse_project_config,
)

FULL = """\
environment = "staging"

[steps]
folders = ["flows"]

[state]
adapter = "redis"
url = "redis://127.0.0.1:6379/0"

[dev]
host = "0.0.0.0"
port = 8080
"""


def problems(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_project_config(text, "wayang.toml")
    return [d.format() for d in caught.value.diagnostics]


def test_every_key_is_optional() -> None:
    config = parse_project_config("")
    assert config == ProjectConfig()
    assert config.steps.folders == ("steps", "src")
    assert (config.state.adapter, config.state.url) == ("file", "")
    assert (config.dev.host, config.dev.port) == ("127.0.0.1", 3000)
    assert config.environment == "dev"


def test_a_full_file() -> None:
    config = parse_project_config(FULL)
    assert config.environment == "staging"
    assert config.steps.folders == ("flows",)
    assert (config.state.adapter, config.state.url) == ("redis", "redis://127.0.0.1:6379/0")
    assert (config.dev.host, config.dev.port) == ("0.0.0.0", 8080)


def test_unknown_keys_are_errors_with_suggestions() -> None:
    assert problems('[steps]\nfolder = ["a"]\n\n[dev]\nprot = 1\n') == [
        "wayang.toml:2:1: error: unknown key 'steps.folder'; did you mean 'folders'?",
        "wayang.toml:5:1: error: unknown key 'dev.prot'; did you mean 'port'?",
    ]
    assert problems("[server]\nport = 1\n") == [
        "wayang.toml:1:2: error: unknown key 'server'; the keys here are environment, steps, "
        "state, dev, workspaces"
    ]


def test_bad_values_are_errors_at_their_place() -> None:
    assert problems('[state]\nadapter = "postgres"\n\n[dev]\nport = 70000\n') == [
        "wayang.toml:2:11: error: 'state.adapter': Input should be 'file', 'store' or 'redis' "
        "(got 'postgres'); fix the value in wayang.toml",
        "wayang.toml:5:8: error: 'dev.port': Input should be less than or equal to 65535 "
        "(got 70000); fix the value in wayang.toml",
    ]
    assert problems("steps = 3\n") == [
        "wayang.toml:1:9: error: 'steps': must be a table, written [steps] on a line of its own "
        "(got 3); fix the value in wayang.toml"
    ]


def test_invalid_toml_is_an_error_at_its_place() -> None:
    assert problems("[dev]\nport = \n") == ["wayang.toml:2:8: error: invalid TOML: Invalid value"]


def test_the_root_is_found_upward_and_the_search_stops_at_git(tmp_path: Path) -> None:
    (tmp_path / "wayang.toml").write_text('environment = "outer"\n')
    repo = tmp_path / "repo"
    deep = repo / "steps" / "orders"
    deep.mkdir(parents=True)
    (repo / ".git").mkdir()
    assert find_project_root(deep) == (deep.resolve(), None)
    (repo / "wayang.toml").write_text(FULL)
    assert find_project_root(deep) == (repo.resolve(), (repo / "wayang.toml").resolve())
    project = load_project(deep)
    assert project.root == repo.resolve()
    assert project.config.environment == "staging"
    assert project.file == (repo / "wayang.toml").resolve()


def test_without_a_file_the_start_folder_is_the_root(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    project = load_project(tmp_path)
    assert (project.root, project.file, project.config) == (
        tmp_path.resolve(),
        None,
        ProjectConfig(),
    )


def test_load_project_reports_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "wayang.toml").write_text("[dev]\nport = 0\n")
    with pytest.raises(DefinitionError) as caught:
        load_project(tmp_path)
    assert caught.value.diagnostics[0].file == str(tmp_path.resolve() / "wayang.toml")


def test_a_start_that_is_not_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        load_project(tmp_path / "missing")


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "wayang.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="cannot read it"):
        load_project(tmp_path)
