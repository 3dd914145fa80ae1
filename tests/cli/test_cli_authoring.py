"""The authoring commands, run the way a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wayang import __version__
from wayang.cli.main import main

BROKEN = 'id = "x"\n[steps.a]\nrun = "echo ${{ params.nope }}"\nneds = []\n'


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and __version__ in out
    for command in ("init", "validate", "plan", "schema"):
        code, out, _ = run_cli(capsys, command, "--help")
        assert code == 0 and "Usage:" in out


def test_init_validate_plan_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for template in ("basic", "release"):
        folder = tmp_path / template
        code, out, _ = run_cli(capsys, "init", str(folder), "--template", template)
        assert code == 0 and "created" in out
        text = (folder / "workflow.toml").read_text()
        assert text.startswith("#:schema ./workflow.schema.json")
        assert json.loads((folder / "workflow.schema.json").read_text())["title"]
        code, out, err = run_cli(capsys, "validate", str(folder / "workflow.toml"))
        assert (code, err) == (0, "") and "valid" in out
        code, out, err = run_cli(capsys, "plan", str(folder / "workflow.toml"))
        assert code == 0, err


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "init", str(tmp_path))[0] == 0
    code, _, err = run_cli(capsys, "init", str(tmp_path))
    assert code == 2 and "already exists; pass --force" in err
    assert run_cli(capsys, "init", str(tmp_path), "--force", "-t", "release")[0] == 0
    assert 'id = "release"' in (tmp_path / "workflow.toml").read_text()


def test_validate_reports_every_error_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "workflow.toml"
    path.write_text(BROKEN)
    code, out, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"{path}:3:17: error: unknown parameter 'nope'; declare it under [parameters]",
        f"{path}:4:1: error: unknown key 'neds' in steps.a; did you mean 'needs'?",
        "2 errors",
    ]
    assert "Traceback" not in err


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "workflow.toml"
    path.write_text(BROKEN)
    code, out, _ = run_cli(capsys, "validate", "--json", str(path))
    data = json.loads(out)
    assert code == 2 and data["valid"] is False
    assert [(d["line"], d["column"], d["code"]) for d in data["diagnostics"]] == [
        (3, 17, "unknown-name"),
        (4, 1, "unknown-key"),
    ]
    path.write_text('id = "x"\n[steps.a]\nrun = "true"\n')
    code, out, _ = run_cli(capsys, "validate", "--json", str(path))
    assert code == 0 and json.loads(out) == {
        "valid": True,
        "file": str(path),
        "id": "x",
        "steps": 1,
        "diagnostics": [],
    }


def test_validate_defaults_to_workflow_toml_in_cwd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "validate")
    assert code == 2 and "workflow.toml: no such file; create one with 'wayang init'" in err
    (tmp_path / "workflow.toml").write_text('id = "x"\n[steps.a]\nrun = "true"\n')
    assert run_cli(capsys, "validate")[0] == 0


def test_plan_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    example = str(Path(__file__).parents[2] / "examples/release/workflow.toml")
    code, out, _ = run_cli(capsys, "plan", example, "--param", "target=prod")
    assert code == 0 and "publish" in out and "test-shard" not in out.split("publish")[0][:0]
    code, out, _ = run_cli(capsys, "plan", example, "-p", "shards=3", "--env", "X=1", "--json")
    data = json.loads(out)
    assert data["params"] == {"target": "staging", "shards": 3}
    assert [s["id"] for s in data["steps"]] == ["build", "test-1", "test-2", "publish", "notify"]
    assert data["steps"][1]["command"].endswith("> build/report-1.txt")
    assert data["steps"][0]["env"]["X"] == "1"
    assert data["requirements"] == {"missing": []}


def test_plan_parameter_errors(capsys: pytest.CaptureFixture[str]) -> None:
    example = str(Path(__file__).parents[2] / "examples/release/workflow.toml")
    code, _, err = run_cli(capsys, "plan", example, "-p", "target=qa", "-p", "shards=x")
    assert code == 2
    assert (
        err.splitlines()
        == [
            "--param shards: error: parameter 'shards' must be an integer, got 'x'",
            '--param target: error: parameter \'target\' "qa" is not one of "staging", "prod"',
            "2 errors",
        ]
        or len(err.splitlines()) == 3
    )
    code, _, err = run_cli(capsys, "plan", example, "-p", "target")
    assert code == 2 and "--param expects NAME=VALUE, got 'target'" in err


def test_plan_reports_missing_requirements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "workflow.toml"
    path.write_text(
        'id = "r"\n[requirements]\ntools = ["sh", "no-such-tool-xyz", "python3 >= 99.0"]\n'
        'env = ["WAYANG_TEST_UNSET_VAR"]\n[steps.a]\nrun = "true"\n'
    )
    code, out, _ = run_cli(capsys, "plan", str(path), "--json")
    missing = json.loads(out)["requirements"]["missing"]
    assert code == 0 and len(missing) == 3
    assert "tool 'no-such-tool-xyz' is not on PATH" in missing[0]
    assert "this workflow needs python3 >= 99.0" in missing[1]
    assert "WAYANG_TEST_UNSET_VAR is not set" in missing[2]


def test_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "schema")
    schema = json.loads(out)
    assert code == 0 and schema["$schema"].endswith("2020-12/schema")
    assert {"id", "steps", "parameters"} <= set(schema["properties"])


def test_schema_shows_the_empty_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """Empty lists and dicts are made per model (spec.empty_list), still shown as defaults."""
    _, out, _ = run_cli(capsys, "schema")
    schema = json.loads(out)
    assert schema["properties"]["tags"]["default"] == []
    assert schema["properties"]["parameters"]["default"] == {}


def test_console_script_plain_output_without_terminal(tmp_path: Path) -> None:
    path = tmp_path / "workflow.toml"
    path.write_text(BROKEN)
    wayang = Path(sys.executable).parent / "wayang"
    done = subprocess.run([str(wayang), "validate", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "\x1b[" not in done.stderr and done.stderr.count("error:") == 2
    forced = subprocess.run(
        [str(wayang), "--color", "validate", str(path)], capture_output=True, text=True
    )
    assert "\x1b[" in forced.stderr
