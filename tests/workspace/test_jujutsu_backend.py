"""The Jujutsu backend, against a recorded-command double: jj is not installed where these run.

Each recorded command is the exact argv the backend must run, with what jj prints for it in the
formats jj documents: ``jj log --no-graph -T 'change_id ++ "\\n"'`` prints one full change id a
line (32 letters k–z) and nothing for an empty revset; failures print ``Error: …`` on stderr and
exit with status 1; ``jj workspace forget`` of an unknown name says ``No such workspace: NAME``
(an error in older releases, a warning with exit status 0 in newer ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wayang.workspace.backend import Backend, CommandResult
from wayang.workspace.errors import BackendCommandError, WorkspaceError
from wayang.workspace.jujutsu import INSTALL_URL, JujutsuBackend

BASE_ID = "uowlmnvlqlmxxmrmxlnrlwlrlotxontp"
OTHER_ID = "nqvnmlqzxuyyvtrprmtzuytmnxpuozxl"
TEMPLATE = 'change_id ++ "\\n"'


def ok(stdout: str = "", stderr: str = "") -> CommandResult:
    return CommandResult(0, stdout, stderr)


def failed(stderr: str, returncode: int = 1) -> CommandResult:
    return CommandResult(returncode, "", stderr)


@dataclass
class RecordedRunner:
    """A :data:`CommandRunner` that expects the given commands in order, each exactly, and answers
    each with its recorded result; ``calls`` is what was run."""

    expected: list[tuple[list[str], Path, CommandResult]]
    calls: list[tuple[list[str], Path]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], cwd: Path) -> CommandResult:
        assert self.expected, f"unexpected command: {list(argv)} in {cwd}"
        want_argv, want_cwd, result = self.expected.pop(0)
        assert list(argv) == want_argv
        assert cwd == want_cwd
        self.calls.append((list(argv), cwd))
        return result

    def assert_all_run(self) -> None:
        assert self.expected == [], f"commands never run: {self.expected}"


def log_argv(where: Path, revset: str) -> list[str]:
    return [
        "jj",
        "log",
        "-R",
        str(where),
        "--ignore-working-copy",
        "--color=never",
        "--no-graph",
        "--limit",
        "2",
        "-r",
        revset,
        "-T",
        TEMPLATE,
    ]


def add_argv(repo: Path, dest: Path, name: str, base: str) -> list[str]:
    return [
        "jj",
        "workspace",
        "add",
        "-R",
        str(repo),
        "--color=never",
        "--name",
        name,
        "-r",
        base,
        str(dest),
    ]


def forget_argv(repo: Path, name: str) -> list[str]:
    return ["jj", "workspace", "forget", "-R", str(repo), "--color=never", name]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    (folder / ".jj").mkdir(parents=True)
    return folder


def test_it_fills_the_backend_port() -> None:
    backend: Backend = JujutsuBackend(RecordedRunner([]))
    assert backend.name == "jj"


def test_resolve_without_a_base_is_the_working_copy_change(repo: Path) -> None:
    runner = RecordedRunner([(log_argv(repo, "@"), repo, ok(f"{BASE_ID}\n"))])

    assert JujutsuBackend(runner).resolve(repo, None) == BASE_ID
    runner.assert_all_run()


def test_resolve_passes_the_revset_through(repo: Path) -> None:
    runner = RecordedRunner([(log_argv(repo, "main"), repo, ok(f"{OTHER_ID}\n"))])

    assert JujutsuBackend(runner).resolve(repo, "main") == OTHER_ID
    runner.assert_all_run()


def test_resolve_refuses_a_revset_naming_no_revision(repo: Path) -> None:
    runner = RecordedRunner([(log_argv(repo, "none()"), repo, ok(""))])

    with pytest.raises(WorkspaceError) as raised:
        JujutsuBackend(runner).resolve(repo, "none()")

    message = str(raised.value)
    assert "'none()' names no revision" in message
    assert "'@'" in message  # says what to pass instead
    runner.assert_all_run()


def test_resolve_refuses_a_revset_naming_several_revisions(repo: Path) -> None:
    runner = RecordedRunner([(log_argv(repo, "mine()"), repo, ok(f"{BASE_ID}\n{OTHER_ID}\n"))])

    with pytest.raises(WorkspaceError) as raised:
        JujutsuBackend(runner).resolve(repo, "mine()")

    message = str(raised.value)
    assert "'mine()' names several revisions" in message
    assert "pass exactly one" in message
    assert "latest(mine())" in message
    runner.assert_all_run()


def test_resolve_reports_jj_s_error_not_its_hint(repo: Path) -> None:
    said = "Error: Revision `nope` doesn't exist\nHint: Did you mean `none`?\n"
    runner = RecordedRunner([(log_argv(repo, "nope"), repo, failed(said))])

    with pytest.raises(BackendCommandError) as raised:
        JujutsuBackend(runner).resolve(repo, "nope")

    message = str(raised.value)
    assert message.startswith("'jj log -R ")
    assert f"failed in {repo}: Error: Revision `nope` doesn't exist Hint:" in message


@pytest.mark.parametrize("include_uncommitted", [False, True])
def test_add_makes_a_named_workspace_on_top_of_base(
    repo: Path, tmp_path: Path, include_uncommitted: bool
) -> None:
    dest = tmp_path / "workspaces" / "run-1"
    runner = RecordedRunner(
        [
            (log_argv(repo, BASE_ID), repo, ok(f"{BASE_ID}\n")),
            (
                add_argv(repo, dest, "run-1", BASE_ID),
                repo,
                ok(stderr=f'Created workspace in "{dest}"\n'),
            ),
            (log_argv(dest, "@-"), repo, ok(f"{BASE_ID}\n")),
        ]
    )

    held = JujutsuBackend(runner).add(
        repo, dest, BASE_ID, name="run-1", include_uncommitted=include_uncommitted
    )

    # The id of the new working copy's parent: base itself, as resolve() names it.
    assert held == BASE_ID
    # include_uncommitted changes nothing: jj has no uncommitted changes to carry over.
    runner.assert_all_run()


def test_add_refuses_a_base_naming_several_revisions_before_making_anything(
    repo: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "run-2"
    runner = RecordedRunner([(log_argv(repo, "main | @"), repo, ok(f"{BASE_ID}\n{OTHER_ID}\n"))])

    with pytest.raises(WorkspaceError, match="names several revisions"):
        JujutsuBackend(runner).add(repo, dest, "main | @", name="run-2", include_uncommitted=False)

    assert [argv[1] for argv, _ in runner.calls] == ["log"]  # no 'jj workspace add'
    runner.assert_all_run()


def test_add_reports_a_failed_workspace_add(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "run-3"
    runner = RecordedRunner(
        [
            (log_argv(repo, "@"), repo, ok(f"{BASE_ID}\n")),
            (
                add_argv(repo, dest, "run-3", "@"),
                repo,
                failed("Error: Workspace named 'run-3' already exists\n"),
            ),
        ]
    )

    with pytest.raises(BackendCommandError) as raised:
        JujutsuBackend(runner).add(repo, dest, "@", name="run-3", include_uncommitted=False)

    assert str(raised.value) == (
        f"'jj workspace add -R {repo} --color=never --name run-3 -r @ {dest}' failed in {repo}: "
        "Error: Workspace named 'run-3' already exists"
    )


def make_workspace_folder(dest: Path) -> None:
    (dest / ".jj" / "working_copy").mkdir(parents=True)
    (dest / "src").mkdir()
    (dest / "src" / "main.py").write_text("print('hi')\n")


def test_remove_forgets_the_workspace_and_deletes_its_folder(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "run-4"
    make_workspace_folder(dest)
    runner = RecordedRunner([(forget_argv(repo, "run-4"), repo, ok())])

    JujutsuBackend(runner).remove(repo, dest, name="run-4")

    assert not dest.exists()
    assert repo.is_dir()
    runner.assert_all_run()


@pytest.mark.parametrize(
    "answer",
    [
        failed("Error: No such workspace: run-5\n"),  # older jj releases
        ok(stderr="Warning: No such workspace: run-5\nNothing changed.\n"),  # newer ones
    ],
    ids=["error", "warning"],
)
def test_remove_of_a_workspace_jj_does_not_know_still_deletes_the_folder(
    repo: Path, tmp_path: Path, answer: CommandResult
) -> None:
    dest = tmp_path / "run-5"
    make_workspace_folder(dest)
    runner = RecordedRunner([(forget_argv(repo, "run-5"), repo, answer)])

    JujutsuBackend(runner).remove(repo, dest, name="run-5")

    assert not dest.exists()
    runner.assert_all_run()


def test_remove_of_a_half_made_workspace_without_a_folder(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "never-made"
    runner = RecordedRunner(
        [(forget_argv(repo, "run-6"), repo, failed("Error: No such workspace: run-6\n"))]
    )

    JujutsuBackend(runner).remove(repo, dest, name="run-6")

    assert not dest.exists()
    runner.assert_all_run()


def test_remove_deletes_the_folder_then_reports_another_failure(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "run-7"
    make_workspace_folder(dest)
    said = f"Error: Failed to load the repo\nCaused by: Cannot access {repo}/.jj/repo/op_heads\n"
    runner = RecordedRunner([(forget_argv(repo, "run-7"), repo, failed(said))])

    with pytest.raises(BackendCommandError) as raised:
        JujutsuBackend(runner).remove(repo, dest, name="run-7")

    assert not dest.exists()
    assert str(raised.value) == (
        f"'jj workspace forget -R {repo} --color=never run-7' failed in {repo}: "
        f"Error: Failed to load the repo Caused by: Cannot access {repo}/.jj/repo/op_heads"
    )


def test_remove_refuses_to_delete_the_repository(repo: Path) -> None:
    runner = RecordedRunner([])

    with pytest.raises(WorkspaceError, match="refusing to delete"):
        JujutsuBackend(runner).remove(repo, repo.parent, name="default")

    assert (repo / ".jj").is_dir()
    assert runner.calls == []


def test_nothing_is_ever_uncommitted(repo: Path) -> None:
    runner = RecordedRunner([])

    assert JujutsuBackend(runner).uncommitted(repo) == []
    assert runner.calls == []


def assert_says_how_to_install(message: str) -> None:
    assert "Jujutsu is not installed" in message
    assert INSTALL_URL in message
    assert INSTALL_URL == "https://jj-vcs.github.io/jj/latest/install-and-setup/"
    assert 'backend = "git"' in message


def test_a_missing_jj_says_how_to_install_it(repo: Path) -> None:
    runner = RecordedRunner([(log_argv(repo, "@"), repo, failed("jj: command not found", 127))])

    with pytest.raises(BackendCommandError) as raised:
        JujutsuBackend(runner).resolve(repo, None)

    assert_says_how_to_install(str(raised.value))


def test_a_missing_jj_binary_through_the_real_runner(repo: Path, tmp_path: Path) -> None:
    missing = tmp_path / "bin" / "jj"
    backend = JujutsuBackend(jj=str(missing))

    with pytest.raises(BackendCommandError) as raised:
        backend.add(repo, tmp_path / "run-8", "@", name="run-8", include_uncommitted=False)

    assert_says_how_to_install(str(raised.value))
    assert str(missing) in str(raised.value)
    assert not (tmp_path / "run-8").exists()


def test_remove_without_jj_still_deletes_the_folder(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "run-9"
    make_workspace_folder(dest)
    runner = RecordedRunner([(forget_argv(repo, "run-9"), repo, failed("", 127))])

    with pytest.raises(BackendCommandError) as raised:
        JujutsuBackend(runner).remove(repo, dest, name="run-9")

    assert_says_how_to_install(str(raised.value))
    assert not dest.exists()
