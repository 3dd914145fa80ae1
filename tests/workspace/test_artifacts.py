"""Collecting a run's artifacts on real files: globs, checksums, symlinks leading out, retention,
collecting again after a crash, and verifying copies."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from wayang.errors import DefinitionError
from wayang.model.loader import parse_workflow
from wayang.workspace import artifacts as art
from wayang.workspace.artifacts import (
    ArtifactDeclaration,
    ArtifactManifest,
    artifact_root,
    check_artifact_pattern,
    collect_artifacts,
    declarations,
    load_manifest,
    prune_artifacts,
    verify_artifacts,
)
from wayang.workspace.errors import InvalidArtifactPathError, WorkspaceError

NOW = 1_700_000_000.0
RUN = "run-1"


def write(base: Path, relative: str, data: bytes | str = b"x") -> Path:
    path = base / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def files_below(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    folder = tmp_path / "ws"
    folder.mkdir()
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


def collect(ws: Path, root: Path, *declared: ArtifactDeclaration) -> ArtifactManifest:
    return collect_artifacts(ws, declared, root, RUN, NOW)


# --- matching -----------------------------------------------------------------------------------


def test_globs_and_double_star_pick_the_files_they_name(ws: Path, root: Path) -> None:
    for name in ("dist/a.whl", "dist/b.txt", "reports/z.xml", "reports/x/y.xml", "top.xml"):
        write(ws, name)
    manifest = collect(
        ws,
        root,
        ArtifactDeclaration("wheels", "dist/*.whl", None),
        ArtifactDeclaration("reports", "reports/**/*.xml", None),
    )
    assert [(f.name, f.path) for f in manifest.files] == [
        ("wheels", "dist/a.whl"),
        ("reports", "reports/x/y.xml"),
        ("reports", "reports/z.xml"),
    ]
    assert files_below(root / RUN) == {
        "manifest.json",
        "wheels/dist/a.whl",
        "reports/reports/x/y.xml",
        "reports/reports/z.xml",
    }


def test_a_matched_folder_contributes_every_file_below_it(ws: Path, root: Path) -> None:
    write(ws, "logs/a.log")
    write(ws, "logs/deep/er/b.log")
    (ws / "logs" / "empty").mkdir()
    manifest = collect(ws, root, ArtifactDeclaration("logs", "logs", None))
    assert sorted(f.path for f in manifest.files) == ["logs/a.log", "logs/deep/er/b.log"]
    assert manifest.missing == ()


@pytest.mark.parametrize("pattern", [".", "./", "**", "**/*"])
def test_the_whole_workspace_but_never_the_artifact_store_inside_it(ws: Path, pattern: str) -> None:
    write(ws, "top.txt")
    write(ws, "sub/deep.txt")
    inner = ws / ".wayang" / "artifacts"  # the store may live inside the workspace
    declared = [ArtifactDeclaration("all", pattern, None)]
    collect_artifacts(ws, declared, inner, RUN, NOW)
    again = collect_artifacts(ws, declared, inner, RUN, NOW)
    assert [f.path for f in again.files] == ["sub/deep.txt", "top.txt"]


def test_copies_carry_the_sha256_and_size_of_their_source(ws: Path, root: Path) -> None:
    data = os.urandom(2 * art.CHUNK + 12345)  # several 1 MiB chunks
    source = write(ws, "out/blob.bin", data)
    source.chmod(0o750)
    [file] = collect(ws, root, ArtifactDeclaration("blob", "out/*.bin", None)).files
    assert file.sha256 == hashlib.sha256(data).hexdigest()
    assert file.size == len(data)
    stored = Path(file.stored)
    assert stored == (root / RUN / "blob" / "out" / "blob.bin").absolute()
    assert stored.read_bytes() == data
    assert stored.stat().st_mode & 0o777 == 0o750


def test_a_symlink_leading_out_of_the_workspace_is_refused_and_never_copied(
    ws: Path, root: Path, tmp_path: Path
) -> None:
    secret = write(tmp_path / "outside", "secret.txt", "password")
    write(tmp_path / "outside", "dir/key.pem", "key")
    write(ws, "out/real.txt", "fine")
    (ws / "out" / "leak.txt").symlink_to(secret)
    (ws / "out" / "dirleak").symlink_to(tmp_path / "outside" / "dir")
    (ws / "out" / "alias.txt").symlink_to(ws / "out" / "real.txt")
    manifest = collect(ws, root, ArtifactDeclaration("out", "out/**/*", None))
    assert sorted(f.path for f in manifest.files) == ["out/alias.txt", "out/real.txt"]
    assert len(manifest.refused) == 2
    assert any(r.startswith("out: out/leak.txt: links to") for r in manifest.refused)
    assert any(r.startswith("out: out/dirleak: links to") for r in manifest.refused)
    assert all("outside the workspace" in r for r in manifest.refused)
    stored = root / RUN / "out"
    assert files_below(stored) == {"out/alias.txt", "out/real.txt"}
    assert (stored / "out" / "alias.txt").read_text() == "fine"


def test_a_symlink_out_of_the_workspace_in_a_matched_folder_is_refused(
    ws: Path, root: Path, tmp_path: Path
) -> None:
    write(tmp_path / "outside", "etc/passwd", "root")
    write(ws, "build/ok.txt")
    (ws / "build" / "etc").symlink_to(tmp_path / "outside" / "etc")
    (ws / "build" / "passwd").symlink_to(tmp_path / "outside" / "etc" / "passwd")
    manifest = collect(ws, root, ArtifactDeclaration("build", "build", None))
    assert [f.path for f in manifest.files] == ["build/ok.txt"]
    assert sorted(r.split(": ")[1] for r in manifest.refused) == ["build/etc", "build/passwd"]


def test_declarations_that_matched_nothing_are_missing(ws: Path, root: Path) -> None:
    write(ws, "a.txt")
    manifest = collect(
        ws,
        root,
        ArtifactDeclaration("found", "*.txt", None),
        ArtifactDeclaration("none", "nothing/**/*.bin", 60.0),
    )
    assert manifest.missing == ("none",)
    assert manifest.expires_at == {"found": None, "none": NOW + 60.0}


def test_a_missing_workspace_is_an_error(tmp_path: Path, root: Path) -> None:
    with pytest.raises(WorkspaceError, match="no such folder"):
        collect(tmp_path / "gone", root, ArtifactDeclaration("a", "*", None))


# --- path rules -------------------------------------------------------------------------------

REFUSED_BY_BOTH = ["/etc/*", "../x", "a/../../b", "..", "a\\..\\b", "/"]
ACCEPTED_BY_BOTH = ["dist/*.whl", "**/*.xml", "logs", ".", "a..b/*", "..hidden", "~/x"]
REFUSED_HERE_ONLY = ["C:/windows/*", "c:x", "\\\\server\\share", "\\x", "a\x00b"]


def model_accepts(pattern: str) -> bool:
    text = f'id = "w"\n[artifacts.a]\npath = {json.dumps(pattern)}\n[steps.s]\nrun = "x"\n'
    try:
        parse_workflow(text)
    except DefinitionError:
        return False
    return True


def accepts(pattern: str) -> bool:
    try:
        check_artifact_pattern(pattern, "artifacts.a.path")
    except InvalidArtifactPathError:
        return False
    return True


@pytest.mark.parametrize("pattern", REFUSED_BY_BOTH)
def test_patterns_the_workflow_check_refuses_are_refused_here(pattern: str) -> None:
    assert not model_accepts(pattern)
    assert not accepts(pattern)


@pytest.mark.parametrize("pattern", ACCEPTED_BY_BOTH)
def test_patterns_the_workflow_check_accepts_are_accepted_here(pattern: str) -> None:
    assert model_accepts(pattern)
    assert accepts(pattern)


@pytest.mark.parametrize("pattern", REFUSED_HERE_ONLY)
def test_this_check_is_stricter_than_the_workflow_check(pattern: str) -> None:
    assert not accepts(pattern)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("/etc/passwd", "is absolute"),
        ("../secrets/*", "climbs out of the workspace with '..'"),
        ("C:\\Users\\*", "names a drive"),
        ("a\x00", "contains a NUL character"),
        ("  ", "is empty"),
        ("", "is empty"),
    ],
)
def test_a_refused_pattern_says_where_why_and_what_to_write(pattern: str, why: str) -> None:
    with pytest.raises(InvalidArtifactPathError) as caught:
        check_artifact_pattern(pattern, "artifacts.logs.path")
    message = str(caught.value)
    assert message.startswith("artifacts.logs.path: artifact path ")
    assert why in message
    assert "relative to the workspace, such as 'dist/*.whl'" in message


def test_collect_refuses_a_bad_pattern_before_copying_anything(ws: Path, root: Path) -> None:
    write(ws, "a.txt")
    with pytest.raises(InvalidArtifactPathError, match=r"artifacts\.bad\.path"):
        collect(
            ws,
            root,
            ArtifactDeclaration("good", "*.txt", None),
            ArtifactDeclaration("bad", "../*", None),
        )
    assert not root.exists()


@pytest.mark.parametrize("run_id", ["", "../x", ".hidden", "a/b", "x" * 129, "a\nb", "-a"])
def test_a_run_id_that_is_not_a_plain_folder_name_is_refused(
    ws: Path, root: Path, run_id: str
) -> None:
    with pytest.raises(InvalidArtifactPathError, match="is not a run id"):
        collect_artifacts(ws, [], root, run_id, NOW)
    with pytest.raises(InvalidArtifactPathError):
        load_manifest(root, run_id)
    assert not root.exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "", "1a"])
def test_a_declaration_name_that_is_not_a_name_is_refused(ws: Path, root: Path, name: str) -> None:
    with pytest.raises(InvalidArtifactPathError, match="not a name"):
        collect(ws, root, ArtifactDeclaration(name, "*", None))


def test_declarations_come_from_a_workflows_artifacts_table() -> None:
    workflow = parse_workflow(
        'id = "w"\n[artifacts.logs]\npath = "logs/**"\nretention = "7d"\n'
        '[artifacts.dist]\npath = "dist/*"\n[steps.s]\nrun = "x"\n'
    )
    assert declarations(workflow.artifacts) == (
        ArtifactDeclaration("logs", "logs/**", 7 * 86400.0),
        ArtifactDeclaration("dist", "dist/*", None),
    )


# --- where ------------------------------------------------------------------------------------


def test_artifact_root_follows_the_store(tmp_path: Path) -> None:
    db = tmp_path / "state" / "wayang.db"
    assert artifact_root(str(db), {}) == tmp_path / "state" / "artifacts"
    assert artifact_root(f"sqlite://{db}", {}) == tmp_path / "state" / "artifacts"
    chosen = {"WAYANG_ARTIFACTS": str(tmp_path / "mine")}
    assert artifact_root(str(db), chosen) == tmp_path / "mine"
    data = {"XDG_DATA_HOME": str(tmp_path / "data")}
    expected = tmp_path / "data" / "wayang" / "artifacts"
    assert artifact_root("postgresql://u@h:5432/db", data) == expected
    assert artifact_root("sqlite:///:memory:", data) == expected
    home = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": "relative/ignored"}
    assert artifact_root(":memory:", home) == tmp_path / "home/.local/share/wayang/artifacts"


# --- the manifest -----------------------------------------------------------------------------


def test_the_manifest_is_written_and_read_back(ws: Path, root: Path) -> None:
    write(ws, "a.txt", "hello")
    manifest = collect(ws, root, ArtifactDeclaration("a", "*.txt", 3600.0))
    assert load_manifest(root, RUN) == manifest
    on_disk = json.loads((root / RUN / "manifest.json").read_text())
    assert on_disk["version"] == 1 and on_disk["files"][0]["path"] == "a.txt"
    assert ArtifactManifest.from_json(manifest.to_json()) == manifest
    assert load_manifest(root, "other-run") is None


def test_an_unreadable_manifest_says_what_to_do(root: Path) -> None:
    write(root, f"{RUN}/manifest.json", "{not json")
    with pytest.raises(WorkspaceError, match="collect the run's artifacts again"):
        load_manifest(root, RUN)
    write(root, f"{RUN}/manifest.json", json.dumps({"version": 99}))
    with pytest.raises(WorkspaceError, match="manifest version 99"):
        load_manifest(root, RUN)


# --- collecting again, crashes ----------------------------------------------------------------


def test_collecting_again_replaces_the_previous_copies_cleanly(ws: Path, root: Path) -> None:
    write(ws, "out/keep.txt", "same")
    write(ws, "out/change.txt", "before")
    write(ws, "out/gone.txt", "bye")
    write(ws, "out/becomes_dir", "a file")
    declared = (ArtifactDeclaration("out", "out", None), ArtifactDeclaration("old", "*.md", None))
    write(ws, "notes.md")
    collect(ws, root, *declared)
    write(ws, "out/change.txt", "after")
    (ws / "out" / "gone.txt").unlink()
    (ws / "out" / "becomes_dir").unlink()
    write(ws, "out/becomes_dir/inner.txt", "inside")
    write(ws, "out/new.txt", "new")
    second = collect(ws, root, declared[0])
    assert {f.path: Path(f.stored).read_text() for f in second.files} == {
        "out/becomes_dir/inner.txt": "inside",
        "out/change.txt": "after",
        "out/keep.txt": "same",
        "out/new.txt": "new",
    }
    assert files_below(root / RUN) == {"manifest.json"} | {f"out/{f.path}" for f in second.files}
    assert load_manifest(root, RUN) == second
    assert verify_artifacts(second) == []
    third = collect(ws, root, declared[0])
    assert third == second


def test_a_crashed_collects_temp_files_go_with_the_next_collect(ws: Path, root: Path) -> None:
    write(ws, "out/a.txt", "a")
    collect(ws, root, ArtifactDeclaration("out", "out/*", None))
    leftover = write(root, f"{RUN}/out/out/{art.TEMP_PREFIX}abc123", "half a cop")
    manifest = collect(ws, root, ArtifactDeclaration("out", "out/*", None))
    assert not leftover.exists()
    assert files_below(root / RUN) == {"manifest.json", "out/out/a.txt"}
    assert [f.path for f in manifest.files] == ["out/a.txt"]


def test_a_failure_mid_copy_leaves_no_temp_file_and_the_previous_manifest(
    ws: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(ws, "a.txt", "first")
    first = collect(ws, root, ArtifactDeclaration("a", "*.txt", None))
    write(ws, "a.txt", "second")

    def disk_full(reader: BinaryIO, writer: BinaryIO | None) -> tuple[int, str]:
        assert writer is not None
        writer.write(b"sec")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(art, "_pump", disk_full)
    with pytest.raises(OSError, match="No space left"):
        collect(ws, root, ArtifactDeclaration("a", "*.txt", None))
    monkeypatch.undo()
    assert not any(p.name.startswith(art.TEMP_PREFIX) for p in root.rglob("*"))
    assert load_manifest(root, RUN) == first
    assert verify_artifacts(first) == []


def test_prune_removes_old_temp_files_and_keeps_young_ones(ws: Path, root: Path) -> None:
    write(ws, "a.txt")
    collect(ws, root, ArtifactDeclaration("a", "*.txt", None))
    old = write(root, f"{RUN}/a/{art.TEMP_PREFIX}old")
    young = write(root, f"{RUN}/a/{art.TEMP_PREFIX}young")
    orphan = write(root, f"crashed/sub/{art.TEMP_PREFIX}x")  # a run that never got a manifest
    long_ago = NOW - art.TEMP_GRACE_S - 1
    for path in (old, orphan):
        os.utime(path, (long_ago, long_ago))
    os.utime(young, (NOW, NOW))
    assert prune_artifacts(root, NOW) == []
    assert not old.exists() and young.exists()
    assert not (root / "crashed").exists()
    assert (root / RUN / "a" / "a.txt").exists()


# --- retention --------------------------------------------------------------------------------


def test_prune_removes_expired_declarations_and_keeps_the_rest(ws: Path, root: Path) -> None:
    write(ws, "logs/a.log", "log")
    write(ws, "dist/app.whl", "wheel")
    declared = [
        ArtifactDeclaration("logs", "logs/*", 60.0),
        ArtifactDeclaration("dist", "dist/*", None),
    ]
    collect_artifacts(ws, declared, root, RUN, NOW)
    assert prune_artifacts(root, NOW + 59) == []
    assert (root / RUN / "logs" / "logs" / "a.log").exists()
    assert prune_artifacts(root, NOW + 60) == [(RUN, "logs")]
    assert not (root / RUN / "logs").exists()
    left = load_manifest(root, RUN)
    assert left is not None
    assert [f.name for f in left.files] == ["dist"]
    assert left.expires_at == {"dist": None}
    assert verify_artifacts(left) == []
    assert prune_artifacts(root, NOW + 10**9) == []
    assert (root / RUN / "dist" / "dist" / "app.whl").read_text() == "wheel"


def test_prune_removes_a_run_folder_once_it_keeps_no_file(ws: Path, root: Path) -> None:
    write(ws, "a.txt")
    collect_artifacts(ws, [ArtifactDeclaration("a", "*.txt", 10.0)], root, "old", NOW)
    collect_artifacts(ws, [ArtifactDeclaration("a", "*.txt", 1000.0)], root, "new", NOW)
    assert prune_artifacts(root, NOW + 10) == [("old", "a")]
    assert sorted(p.name for p in root.iterdir()) == ["new"]
    assert load_manifest(root, "old") is None


def test_prune_of_a_missing_root_removes_nothing(tmp_path: Path) -> None:
    assert prune_artifacts(tmp_path / "none", NOW) == []


# --- verifying --------------------------------------------------------------------------------


def test_verify_names_a_tampered_copy_and_a_gone_one(ws: Path, root: Path) -> None:
    write(ws, "a.txt", "original")
    write(ws, "b.txt", "original")
    write(ws, "c.txt", "original")
    manifest = collect(ws, root, ArtifactDeclaration("t", "*.txt", None))
    assert verify_artifacts(manifest) == []
    stored = {f.path: Path(f.stored) for f in manifest.files}
    stored["a.txt"].write_text("tampered")
    stored["b.txt"].unlink()
    problems = verify_artifacts(manifest)
    assert len(problems) == 2
    assert problems[0].startswith("t: a.txt: changed, sha256 ")
    assert hashlib.sha256(b"original").hexdigest()[:12] in problems[0]
    assert problems[1] == f"t: b.txt: gone from {stored['b.txt']}"
