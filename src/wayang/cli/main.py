"""The ``wayang`` command: the root group, and the one place errors become exit statuses."""

from __future__ import annotations

import os
import sys
import traceback

import click
from rich.markup import escape

from wayang import __version__
from wayang.cli.artifacts import artifacts
from wayang.cli.authoring import init, plan, schema, validate
from wayang.cli.context import CliContext
from wayang.cli.dlq import dlq
from wayang.cli.driver import STORE_KEY
from wayang.cli.fleet import FLEET_COMMANDS
from wayang.cli.remote import NO_SERVER_KEY, SERVER_KEY, SERVER_VARIABLE, served
from wayang.cli.render import print_diagnostics
from wayang.cli.reports import logs, replay, runs, status
from wayang.cli.runs import cancel_command, drive_handover, resume, retry, run
from wayang.cli.server import server
from wayang.cli.steps import COMMANDS as STEP_COMMANDS
from wayang.cli.trace_export import trace
from wayang.cli.waits import COMMANDS as WAIT_COMMANDS
from wayang.cli.workspace import workspace
from wayang.errors import DefinitionError, WayangError

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in Wayang, never the user's input


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="wayang")
@click.option(
    "--color/--no-color", default=None, help="Force colour on or off (default: on a terminal)."
)
@click.option(
    "--store",
    metavar="PATH|URL",
    help="Where runs are kept: a SQLite file or sqlite:///abs/path "
    "[default: $WAYANG_STORE, else $XDG_STATE_HOME/wayang/wayang.db].",
)
@click.option(
    "--server",
    metavar="URL",
    envvar=SERVER_VARIABLE,
    help="Go through the Wayang server at URL [default: $WAYANG_SERVER, else the server of the "
    "store when one runs on this machine].",
)
@click.option(
    "--no-server", is_flag=True, help="Run every command in this process, even if a server runs."
)
@click.pass_context
def cli(
    ctx: click.Context, color: bool | None, store: str | None, server: str | None, no_server: bool
) -> None:
    """Wayang: durable workflows for people, AI and systems.

    Write a workflow.toml (wayang init), check it (wayang validate), see its plan (wayang plan),
    run it (wayang run), then look at runs (wayang runs, status, logs). Options before the
    command, such as --store, apply to every command.

    When a Wayang server runs (wayang server), the commands that start, follow, read and signal
    runs go through it: the one given by --server, else the server of the store.
    """
    if color is not None:
        ctx.obj.recolor(color)
    ctx.meta[STORE_KEY] = store
    ctx.meta[SERVER_KEY] = None if no_server else server
    ctx.meta[NO_SERVER_KEY] = no_server


for command in (
    init,
    validate,
    plan,
    schema,
    run,
    status,
    runs,
    logs,
    cancel_command,
    resume,
    retry,
    replay,
    trace,
    dlq,
    drive_handover,
    server,
    *FLEET_COMMANDS,
    *WAIT_COMMANDS,
    *STEP_COMMANDS,
):
    cli.add_command(served(command))
cli.add_command(served(artifacts))
cli.add_command(workspace)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status: 0 ok, 1 failed, 2 bad input, 70 internal error."""
    context = CliContext.create()
    try:
        # Without standalone mode click returns an Exit's status instead of raising it.
        status = cli.main(args=argv, prog_name="wayang", standalone_mode=False, obj=context)
    except Exception as exc:  # the one place every error becomes an exit status
        return _report(exc, context)
    return status if isinstance(status, int) else 0


def _report(exc: Exception, context: CliContext) -> int:
    if isinstance(exc, DefinitionError):
        print_diagnostics(context.err, exc.diagnostics)
    elif isinstance(exc, WayangError):
        context.err.print(f"[bold red]error[/]: {escape(str(exc))}")
    elif isinstance(exc, click.ClickException):
        exc.show()
    elif isinstance(exc, click.exceptions.Abort):
        context.err.print("aborted")
        return 130
    else:
        return _internal_error()
    return int(getattr(exc, "exit_code", 1))


def _internal_error() -> int:
    if os.environ.get("WAYANG_DEBUG"):
        traceback.print_exc()
    else:
        print(
            "wayang: internal error (a bug in Wayang, not in your input); "
            "rerun with WAYANG_DEBUG=1 to see the traceback and report it",
            file=sys.stderr,
        )
    return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
