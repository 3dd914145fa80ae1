"""Suite-wide settings: under CI=true, Hypothesis replays a fixed set of examples."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from wayang.runtime.outage import Outage

# The CLI fixtures (``db``, ``wayang``) shared by tests/cli and tests/steps, and PostgreSQL's.
pytest_plugins = ["cli_runs", "postgres_fixtures"]

# Locally every run explores new examples (that is how bugs are found); in CI a submission must
# not pass or fail by luck, so the examples are derived from each test's name instead.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _workspaces_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Runs' workspaces and artifacts never land in the user's own data folder."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("data")
    mp.setenv("WAYANG_WORKSPACES", str(root / "workspaces"))
    mp.setenv("XDG_DATA_HOME", str(root))
    # Tests that run the examples would otherwise make worktrees of this checkout; tests of
    # workspaces make their own repositories and set the mode back.
    mp.setenv("WAYANG_WORKSPACE_MODE", "off")
    yield
    mp.undo()


# What the database drivers say when a query was sent without one of its parameters: a bug in
# the store's code, which a chore retrying "until the store answers" would otherwise hide.
_BINDING_ERRORS = (
    "query parameter missing",
    "query parameter unexpected",
    "did not supply a value for binding parameter",
    "Incorrect number of bindings",
)


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    """A command run in this process (``wayang run`` tunes the garbage collector for an
    engine) leaves the collector's thresholds as it found them."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


@pytest.fixture(autouse=True)
def _no_query_sent_without_its_parameters(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test during which a chore's outage absorbed a query that lacked a parameter
    (``Outage.failed``: the chore goes on, trying again, so nothing else would notice)."""
    seen: list[str] = []
    failed = Outage.failed

    def noting(self: Outage, error: BaseException) -> float:
        if any(binding in str(error) for binding in _BINDING_ERRORS):
            seen.append(str(error))
        return failed(self, error)

    monkeypatch.setattr(Outage, "failed", noting)
    yield
    if seen:
        pytest.fail(f"a query was sent without its parameters: {seen[0]}")
