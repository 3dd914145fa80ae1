"""wayang.lock records the resolved registry; check_lock says in sentences what changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wayang.errors import DefinitionError, Diagnostic, UsageError
from wayang.steps.discovery import discover_steps
from wayang.steps.lock import LOCK_FILE, check_lock, lock_data, read_lock, write_lock
from wayang.steps.registry import StepRegistry

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def root(shop_root: Path) -> Path:
    return shop_root


def registry(root: Path) -> StepRegistry:
    return StepRegistry.build(*discover_steps(root))


def edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def test_the_lock_records_each_step(root: Path) -> None:
    path = write_lock(registry(root), root)
    assert path == root / LOCK_FILE
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert sorted(data["steps"]) == sorted(registry(root).steps)
    entry = data["steps"]["ProcessOrder"]
    assert entry == {
        "file": "steps/orders/process_order.step.py",
        "sha256": entry["sha256"],
        "type": "event",
        "subscribes": ["order.created"],
        "emits": ["order.flagged", "order.processed"],
        "method": "",
        "path": "",
        "cron": "",
    }
    assert len(entry["sha256"]) == 64
    assert data["steps"]["CreateOrder"]["method"] == "POST"
    assert data["steps"]["Cleanup"]["cron"] == "*/5 * * * *"
    assert path.read_text().endswith("}\n")
    assert read_lock(root) == data["steps"]


def test_an_unchanged_project_matches_its_lock(root: Path) -> None:
    write_lock(registry(root), root)
    assert check_lock(registry(root), root) == []


def test_changes_are_reported_in_sentences(root: Path) -> None:
    write_lock(registry(root), root)
    edit(root / "steps/cleanup.step.py", "*/5 * * * *", "0 * * * *")
    edit(root / "steps/orders/notify_step.py", '"order.processed"', '"order.priced"')
    edit(root / "steps/audit.step.py", '"Audit"', '"AuditLog"')
    edit(root / "src/greetings_step.py", '"/hello"', '"/hi"')
    assert check_lock(registry(root), root) == [
        "step 'AuditLog' (steps/audit.step.py) is new: wayang.lock does not have it",
        "step 'Audit' is in wayang.lock (from steps/audit.step.py) but was not loaded: it was "
        "removed or renamed",
        "steps/cleanup.step.py changed since wayang.lock was written (its sha256 differs)",
        "step 'Cleanup' runs on schedule '0 * * * *' now; wayang.lock has '*/5 * * * *'",
        "src/greetings_step.py changed since wayang.lock was written (its sha256 differs)",
        "step 'Hello' serves path '/hi' now; wayang.lock has '/hello'",
        "steps/orders/notify_step.py changed since wayang.lock was written (its sha256 differs)",
        "step 'Notify' subscribes to 'order.priced' now; wayang.lock has 'order.processed'",
    ]


def test_a_moved_file_is_reported(root: Path) -> None:
    write_lock(registry(root), root)
    (root / "steps/archive").mkdir()
    (root / "steps/audit.step.py").rename(root / "steps/archive/audit.step.py")
    assert check_lock(registry(root), root) == [
        "step 'Audit' moved from steps/audit.step.py to steps/archive/audit.step.py"
    ]


def test_a_missing_or_broken_lock_is_a_usage_error(root: Path) -> None:
    with pytest.raises(UsageError, match="not found; run 'wayang lock' to write it"):
        check_lock(registry(root), root)
    (root / LOCK_FILE).write_text("{")
    with pytest.raises(UsageError, match="cannot read it"):
        read_lock(root)
    for text in ("[]", '{"version": 2, "steps": {}}', '{"version": 1, "steps": {"A": 1}}'):
        (root / LOCK_FILE).write_text(text)
        with pytest.raises(UsageError, match="not a version 1 lock file; run 'wayang lock'"):
            read_lock(root)


def test_a_registry_with_errors_is_not_locked(root: Path) -> None:
    broken = StepRegistry.build([], [Diagnostic("steps/x.step.py", 1, 1, "bad")])
    with pytest.raises(DefinitionError, match="bad"):
        write_lock(broken, root)
    assert not (root / LOCK_FILE).exists()


def test_lock_data_without_writing(root: Path) -> None:
    data = lock_data(registry(root), root)
    assert data["version"] == 1 and "Greet" in data["steps"]
