"""The server's workspace retention: each repository's workspaces cleaned by the policy its
runs recorded, a repository none of whose runs the server's store knows left alone, expired
artifacts pruned, and ``wayang server --retention-every`` doing it again and again."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_runs import running_server

from cli_runs import Wayang, wait_for
from wayang.cli.main import main
from wayang.server.retention import RetentionLoop
from wayang.store.port import Store
from wayang.store.urls import open_store
from wayang.workspace.manager import list_namespace, namespace_name
from wayang.workspace.metadata import iso_now, read_meta, write_meta
from wayang.workspace.settings import RetentionSettings

WORKFLOW = """
id = "demo"
version = "1.0.0"

[parameters.code]
type = "string"
default = "0"

[steps.work]
run = "echo report > report.txt; exit ${{ params.code }}"

[artifacts.report]
path = "report.txt"
retention = "1h"
"""

POLICY = '[workspaces.retention]\nkeep_last = 1\nkeep_failed = "1h"\n'


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def make_repo(folder: Path, policy: str = POLICY) -> Path:
    folder.mkdir(parents=True)
    git(folder, "init", "-q")
    git(folder, "config", "user.email", "test@example.com")
    git(folder, "config", "user.name", "Test")
    git(folder, "config", "commit.gpgsign", "false")
    (folder / "workflow.toml").write_text(textwrap.dedent(WORKFLOW))
    (folder / "wayang.toml").write_text(policy)
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "init")
    return folder


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WAYANG_WORKSPACE_MODE", "per-run")
    folder = make_repo(tmp_path / "repo")
    monkeypatch.chdir(folder)
    return folder


def root() -> Path:
    return Path(os.environ["WAYANG_WORKSPACES"]).resolve()


def namespace(repo: Path) -> Path:
    return root() / namespace_name(repo)


def ids(repo: Path) -> set[str]:
    return {row.id for row in list_namespace(namespace(repo))}


def run(wayang: Wayang, code: int = 0) -> str:
    done = wayang("run", "workflow.toml", "--json", "-p", f"code={code}")
    assert done.code == (0 if code == 0 else 1), done.err
    run_id: str = done.json()["run_id"]
    return run_id


def age(workspace: Path, seconds: float) -> None:
    meta = read_meta(workspace)
    assert meta is not None
    then = iso_now(time.time() - seconds)
    write_meta(workspace, meta.model_copy(update={"created_at": then, "updated_at": then}))


def half_made(repo: Path, name: str) -> Path:
    folder = namespace(repo) / name
    folder.mkdir()
    old = time.time() - 3600
    os.utime(folder, (old, old))
    return folder


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    opened = open_store(str(db))
    yield opened
    opened.close()


def test_each_repository_is_cleaned_by_the_policy_its_runs_recorded(
    *,
    repo: Path,
    wayang: Wayang,
    db: Path,
    tmp_path: Path,
    store: Store,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    finished = [run(wayang) for _ in range(3)]
    for index, run_id in enumerate(finished):  # the last is the newest
        age(namespace(repo) / run_id, 600 * (3 - index))
    failed = run(wayang, code=1)
    broken = half_made(repo, "broken")
    # Another repository whose runs are in another store: not this server's to clean.
    foreign = make_repo(tmp_path / "foreign", "[workspaces.retention]\nkeep_last = 0\n")
    monkeypatch.chdir(foreign)
    for _ in range(2):
        assert main(["--store", str(tmp_path / "other.db"), "run", "workflow.toml"]) == 0
    capsys.readouterr()
    assert len(ids(foreign)) == 2

    async def one_sweep(loop: RetentionLoop) -> None:
        async with loop:
            async with asyncio.timeout(20):
                while loop.sweeps == 0:
                    await asyncio.sleep(0.02)

    default = RetentionSettings(keep_last=0)  # the runs' recorded policy wins
    loop = RetentionLoop(store, root(), db.parent / "artifacts", default, every_s=3600)
    with caplog.at_level(logging.INFO, logger="wayang.server"):
        asyncio.run(one_sweep(loop))

    assert loop.sweeps == 1  # the next is an hour away
    assert ids(repo) == {finished[2], failed}
    assert not broken.exists()
    assert len(ids(foreign)) == 2
    said = [record.getMessage() for record in caplog.records]
    for run_id in finished[:2]:
        path = namespace(repo) / run_id
        assert f"workspace retention: removed {path} (more than keep_last = 1)" in said
    assert f"workspace retention: removed {broken} (half made (its maker is gone))" in said


def test_failed_workspaces_and_artifacts_expire(
    repo: Path, wayang: Wayang, db: Path, store: Store
) -> None:
    failed, kept = run(wayang, code=1), run(wayang)
    artifacts = db.parent / "artifacts"
    assert (artifacts / failed / "report" / "report.txt").is_file()
    loop = RetentionLoop(store, root(), artifacts, RetentionSettings())

    assert loop.sweep().empty  # nothing is old enough yet
    loop.clock = lambda: time.time() + 2 * 3600
    cleaning = loop.sweep()

    assert [(item.info.id, item.reason) for item in cleaning.removed] == [
        (failed, "failed 2h ago (keep_failed)")
    ]
    assert ids(repo) == {kept}
    assert sorted(cleaning.artifacts) == sorted([(failed, "report"), (kept, "report")])
    assert not (artifacts / failed).exists()
    assert not (artifacts / kept).exists()


def test_a_server_cleans_every_retention_every(
    repo: Path, wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    first, second = run(wayang), run(wayang)
    age(namespace(repo) / first, 600)
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {"WAYANG_WORKSPACE_MODE": "per-run"}
    with running_server(db, logs, "--retention-every", "1s", env=env) as server:
        wait_for(lambda: ids(repo) == {second}, 20, "the first clean")
        later = half_made(repo, "later")  # made after the first clean: the next one takes it
        wait_for(lambda: not later.exists(), 20, "a later clean")
    said = server.err()
    assert f"workspace retention: removed {namespace(repo) / first} (more than keep_last" in said
    assert f"workspace retention: removed {later} (half made" in said
