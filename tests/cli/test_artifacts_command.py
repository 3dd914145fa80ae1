"""``wayang artifacts RUN``: the table, JSON, ``--verify`` and its exit statuses, on artifacts
collected from real files into the folder beside the test's store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cli_runs import Wayang
from wayang.workspace.artifacts import (
    ArtifactDeclaration,
    ArtifactManifest,
    artifact_root,
    collect_artifacts,
)

RUN = "20240101-abc"
NOW = 1_700_000_000.0


@pytest.fixture(autouse=True)
def _no_chosen_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAYANG_ARTIFACTS", raising=False)


def collected(db: Path, tmp_path: Path, root: Path | None = None) -> ArtifactManifest:
    ws = tmp_path / "ws"
    (ws / "dist").mkdir(parents=True)
    (ws / "dist" / "app.whl").write_bytes(b"w" * 2048)
    (ws / "report.xml").write_text("<ok/>")
    declared = [
        ArtifactDeclaration("wheel", "dist/*.whl", 7 * 86400.0),
        ArtifactDeclaration("report", "*.xml", None),
        ArtifactDeclaration("coverage", "htmlcov/**", None),
    ]
    where = root or artifact_root(str(db), os.environ)
    return collect_artifacts(ws, declared, where, RUN, NOW)


def test_lists_the_kept_files(wayang: Wayang, db: Path, tmp_path: Path) -> None:
    manifest = collected(db, tmp_path)
    assert Path(manifest.files[0].stored).is_relative_to(tmp_path / "artifacts")
    result = wayang("artifacts", RUN)
    assert result.code == 0, result.err
    header, wheel, report, *notes = result.lines
    assert header.split() == ["NAME", "PATH", "SIZE", "SHA256", "EXPIRES"]
    digest = hashlib.sha256(b"w" * 2048).hexdigest()
    assert wheel.split()[:5] == ["wheel", "dist/app.whl", "2.0", "KiB", digest[:12]]
    assert digest not in wheel  # shortened
    assert report.split() == [
        "report",
        "report.xml",
        "5",
        "B",
        manifest.files[1].sha256[:12],
        "never",
    ]
    assert notes == ["missing: coverage (matched no file it could keep)"]


def test_json_is_the_manifest(wayang: Wayang, db: Path, tmp_path: Path) -> None:
    manifest = collected(db, tmp_path)
    result = wayang("artifacts", RUN, "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert data == manifest.to_json()
    assert data["expires_at"]["wheel"] == NOW + 7 * 86400.0
    assert "verified" not in data


def test_verify_passes_while_the_copies_are_intact(
    wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    collected(db, tmp_path)
    result = wayang("artifacts", RUN, "--verify")
    assert result.code == 0, result.err
    assert result.lines[-1] == "verified: all 2 copies match their sha256"
    data = wayang("artifacts", RUN, "--verify", "--json").json()
    assert data["verified"] is True and data["problems"] == []


def test_verify_exits_1_naming_a_changed_and_a_gone_copy(
    wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    manifest = collected(db, tmp_path)
    wheel, report = (Path(f.stored) for f in manifest.files)
    wheel.write_bytes(b"tampered")
    report.unlink()
    result = wayang("artifacts", RUN, "--verify")
    assert result.code == 1
    assert "wheel: dist/app.whl: changed, sha256" in result.err
    assert f"report: report.xml: gone from {report}" in result.err.replace("\n", "")
    assert "verified" not in result.out
    data = wayang("artifacts", RUN, "--verify", "--json")
    assert data.code == 1
    assert data.json()["verified"] is False and len(data.json()["problems"]) == 2


def test_a_run_without_artifacts_says_so_and_what_to_check(wayang: Wayang, tmp_path: Path) -> None:
    result = wayang("artifacts", "no-such-run")
    assert result.code == 1
    said = " ".join(result.err.split())
    assert f"run no-such-run has no collected artifacts under {tmp_path / 'artifacts'}" in said
    assert "'wayang runs'" in said and "$WAYANG_ARTIFACTS" in said
    assert result.out == ""


def test_a_bad_run_id_is_a_usage_error(wayang: Wayang) -> None:
    result = wayang("artifacts", "../etc")
    assert result.code == 2
    assert "is not a run id" in result.err


def test_wayang_artifacts_variable_names_the_root(
    wayang: Wayang, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "elsewhere"
    collected(db, tmp_path, root=chosen)
    assert wayang("artifacts", RUN).code == 1  # not beside the store
    monkeypatch.setenv("WAYANG_ARTIFACTS", str(chosen))
    result = wayang("artifacts", RUN, "--json")
    assert result.code == 0, result.err
    assert all(f["stored"].startswith(str(chosen)) for f in result.json()["files"])
