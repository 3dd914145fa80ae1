"""Suite-wide settings: under CI=true, Hypothesis replays a fixed set of examples."""

from __future__ import annotations

import os

from hypothesis import settings

# The CLI fixtures (``db``, ``wayang``) shared by tests/cli and tests/steps, and PostgreSQL's.
pytest_plugins = ["cli_runs", "postgres_fixtures"]

# Locally every run explores new examples (that is how bugs are found); in CI a submission must
# not pass or fail by luck, so the examples are derived from each test's name instead.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")
