"""``wayang dlq``: steps that failed for good (dead letters), listed and replayed."""

from __future__ import annotations

import click

from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import json_text, open_app
from wayang.cli.run_render import letter_json, print_letters
from wayang.cli.runs import check_requirements, drive_new, exit_with
from wayang.errors import UsageError
from wayang.ids import new_run_id
from wayang.runtime.operations import prepare_letter_replay


@click.group()
def dlq() -> None:
    """Dead letters: steps that used up every attempt. List them, or replay one."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@pass_cli
def list_letters(cli: CliContext, as_json: bool) -> None:
    """List dead letters, oldest first."""
    with open_app() as app:
        letters = app.store.dead_letters()
    if as_json:
        click.echo(json_text([letter_json(letter) for letter in letters]))
    elif letters:
        print_letters(cli.out, letters)
    else:
        cli.err.print("no dead letters", soft_wrap=True)


@dlq.command("replay")
@click.argument("dlq_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@pass_cli
def replay_letter(cli: CliContext, dlq_id: str, as_json: bool) -> None:
    """Take dead letter ID and run its run again from its step, as a new run.

    The letter is removed; steps before it are reused, not run again. Its run must have ended.
    Exit statuses are those of 'wayang run'.
    """
    with open_app() as app:
        letter, request = prepare_letter_replay(app.store, dlq_id)
        check_requirements(request.plan.workflow, request.started.env_overrides)
        if app.store.remove_dead_letter(dlq_id) is None:
            raise UsageError(f"dead letter {dlq_id!r} was taken by someone else just now")
        run_id = new_run_id()
        if not as_json:
            cli.err.print(
                f"replaying {letter.step_id} of run {letter.run_id} as run {run_id}",
                soft_wrap=True,
                markup=False,
            )
        exit_with(drive_new(cli, app, request, run_id, as_json))
