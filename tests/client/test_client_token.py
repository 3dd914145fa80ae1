"""The API token: a server with one refuses requests without it, and refuses to start open on a
public interface."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from server_runs import free_port, running_server

from cli_runs import child_env
from wayang.client import ApiError, Client


@pytest.mark.timeout(120)
def test_requests_need_the_token_when_the_server_has_one(tmp_path: Path) -> None:
    with running_server(tmp_path / "w.db", tmp_path, env={"WAYANG_API_TOKEN": "secret"}) as server:
        with Client(server.url) as anonymous:
            assert anonymous.health().status == "ok"  # health answers everyone
            with pytest.raises(ApiError) as refused:
                anonymous.workflows()
        assert (refused.value.status, refused.value.kind) == (401, "unauthorized")
        assert "Authorization: Bearer" in str(refused.value)
        with Client(server.url, token="wrong") as guessing, pytest.raises(ApiError):
            guessing.runs()
        with Client(server.url, token="secret") as allowed:
            assert allowed.workflows() == []
            assert allowed.runs().items == []
            with pytest.raises(ApiError) as no_project:  # and a server without --project
                allowed.steps()
        assert (no_project.value.status, no_project.value.kind) == (404, "no-steps-project")


def test_a_public_interface_without_a_token_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    env = child_env(db)
    env.pop("WAYANG_API_TOKEN", None)
    argv = ["server", "--host", "0.0.0.0", "--port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "wayang.cli.main", "--store", str(db), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "not a loopback address" in done.stderr
    assert "WAYANG_API_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr
