"""Which commands go through a running ``wayang server``, and which server: the one place the
CLI decides between its server and this process.

``--server URL`` (or ``$WAYANG_SERVER``) names the server. Without it, the server of the
store is used when its Unix socket (:func:`wayang.server.locate.socket_path`) answers; with
``--no-server``, or when no server answers there, every command runs in this process. Requests
carry ``$WAYANG_API_TOKEN`` and act as ``$WAYANG_USER`` (or ``--as USER`` where a command has
it).

The commands in :data:`REMOTE` then run their twin in :mod:`wayang.cli.remote_runs` or
:mod:`wayang.cli.remote_reads`: same arguments, same output, same exit statuses; the others
always run here. :func:`served` puts the choice into a command tree.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from wayang.app import Settings
from wayang.cli import remote_reads as reads
from wayang.cli import remote_runs as runs
from wayang.cli import trace_export
from wayang.cli.context import CliContext
from wayang.cli.driver import STORE_KEY
from wayang.client import ApiError, Client, ServerUnavailableError
from wayang.errors import DefinitionError, PlanError
from wayang.runtime.operations import current_actor
from wayang.server.locate import TOKEN_VARIABLE, socket_path

SERVER_KEY = "wayang.server"
"""Where the root group leaves ``--server`` (or ``$WAYANG_SERVER``) in ``click.Context.meta``."""
NO_SERVER_KEY = "wayang.no-server"
SERVER_VARIABLE = "WAYANG_SERVER"
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Remote:
    """A command's twin that goes through the server; the command runs here anyway when one of
    the options named in ``unless`` is given (they mean something only here)."""

    command: Callable[..., None]
    unless: tuple[str, ...] = ()

    def applies(self, params: dict[str, Any]) -> bool:
        return not any(params.get(name) for name in self.unless)


REMOTE: dict[str, Remote] = {
    "run": Remote(runs.run, unless=("cpus",)),  # pinned: driven by this process
    "resume": Remote(runs.resume, unless=("cpus",)),
    "retry": Remote(runs.retry, unless=("cpus",)),
    "cancel": Remote(runs.cancel),
    "dlq replay": Remote(runs.replay_letter),
    "status": Remote(reads.status),
    "runs": Remote(reads.runs),
    "logs": Remote(reads.logs, unless=("trace_id",)),  # traces live in the store only
    "trace": Remote(trace_export.remote_trace),
    "approvals": Remote(reads.approvals),
    "approve": Remote(reads.approve),
    "reject": Remote(reads.reject),
    "offer": Remote(reads.offer),
    "accept": Remote(reads.accept),
    "decline": Remote(reads.decline),
    "complete": Remote(reads.complete),
    "emit": Remote(reads.emit),
    "dlq list": Remote(reads.list_letters),
    "steps list": Remote(reads.steps_list, unless=("project_dir",)),
    "steps activate": Remote(reads.activate, unless=("project_dir",)),
    "steps deactivate": Remote(reads.deactivate, unless=("project_dir",)),
    "flows": Remote(reads.flows, unless=("project_dir",)),
}
"""The commands that go through a server when one is in use, by their path below ``wayang``."""


def server_for(ctx: click.Context) -> Client | None:
    """A client of the server the command should use, or None to run in this process."""
    if ctx.meta.get(NO_SERVER_KEY):
        return None
    token = os.environ.get(TOKEN_VARIABLE) or None
    user = current_actor(os.environ)
    url = ctx.meta.get(SERVER_KEY)
    if url:
        return Client(url, token=token, user=user)
    path = socket_path(Settings.from_environment(ctx.meta.get(STORE_KEY)).store)
    if not _listening(path):
        return None
    try:
        with Client(socket=path, token=token, timeout=PROBE_TIMEOUT_S) as probe:
            probe.health()
    except (ServerUnavailableError, ApiError):  # not a Wayang server, or a stuck one
        return None
    return Client(socket=path, token=token, user=user)


def _listening(path: Path) -> bool:
    """Whether a process listens on the Unix socket ``path`` (a server killed leaves its socket
    behind). Checked here because httpcore leaks the socket of a connection that fails."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def served(command: click.Command, parent: str = "") -> click.Command:
    """A copy of ``command`` (and of its subcommands) whose commands in :data:`REMOTE` go
    through the server when one is in use."""
    path = f"{parent} {command.name}".strip()
    twin = copy.copy(command)
    if isinstance(command, click.Group):
        assert isinstance(twin, click.Group)
        twin.commands = {name: served(sub, path) for name, sub in command.commands.items()}
    elif path in REMOTE and command.callback is not None:
        twin.callback = _dispatch(command.callback, REMOTE[path])
    return twin


def _dispatch(here: Callable[..., Any], remote: Remote) -> Callable[..., Any]:
    @functools.wraps(here)
    def callback(**params: Any) -> Any:
        ctx = click.get_current_context()
        client = server_for(ctx) if remote.applies(params) else None
        if client is None:
            return here(**params)
        with client, _translated():
            return remote.command(ctx.ensure_object(CliContext), client, **params)

    return callback


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """A refused definition or parameters become the errors the in-process command raises,
    so they print the same diagnostics."""
    try:
        yield
    except ApiError as exc:
        found = exc.diagnostics
        if exc.kind == "invalid-parameters" and found:
            raise PlanError(found) from None
        if exc.kind == "invalid-workflow" and found:
            raise DefinitionError(found) from None
        raise


__all__ = ["NO_SERVER_KEY", "REMOTE", "SERVER_KEY", "Remote", "served", "server_for"]
