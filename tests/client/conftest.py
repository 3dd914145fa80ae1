"""One real ``wayang server`` (serving a copy of the steps-basic example) for the client tests of
a module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_runs import ServerProcess, running_server

from wayang.client import Client

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("server")
    project = root / "project"
    shutil.copytree(EXAMPLES / "steps-basic", project, ignore=shutil.ignore_patterns(".wayang"))
    with running_server(root / "wayang.db", root, "--project", str(project)) as running:
        yield running


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url, user="tester", timeout=30) as opened:
        yield opened
