"""``wayang dlq``: steps that failed for good (dead letters), listed and replayed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click

from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import json_text, open_app
from wayang.cli.run_render import letter_json, print_letters, print_rows
from wayang.cli.runs import drive_new, exit_with
from wayang.cli.trace_render import delivery_json
from wayang.errors import UsageError
from wayang.ids import new_run_id
from wayang.requirements import check_requirements
from wayang.runtime.operations import prepare_letter_replay
from wayang.store.port import DeadLetter


@click.group()
def dlq() -> None:
    """Dead letters: workflow steps and event-step deliveries that used up every attempt (or
    whose payload their step rejects). List them, or replay one."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@pass_cli
def list_letters(cli: CliContext, as_json: bool) -> None:
    """List dead letters, oldest first: workflow steps, then event-step deliveries."""
    with open_app() as app:
        letters = app.store.dead_letters()
        dead = app.store.list_deliveries(status="dead", limit=1000)
    found = [delivery_json(d) for d in dead]
    rows = [[d.delivery_id, d.step, d.topic, d.trace_id, str(d.attempt), d.error] for d in dead]
    show_letters(cli, letters, found, rows, as_json)


def show_letters(
    cli: CliContext,
    letters: Sequence[DeadLetter],
    deliveries: Sequence[dict[str, Any]],
    delivery_rows: Sequence[Sequence[str]],
    as_json: bool,
) -> None:
    """What ``wayang dlq list`` prints: the letters, then the dead deliveries (as JSON objects
    and as rows: delivery, step, topic, trace, attempts, error)."""
    if as_json:
        found = [{"kind": "step", **letter_json(letter)} for letter in letters]
        found += [{"kind": "delivery", **delivery} for delivery in deliveries]
        click.echo(json_text(found))
        return
    if letters:
        print_letters(cli.out, letters)
    if delivery_rows:
        header = ("delivery", "step", "topic", "trace", "attempts", "error")
        print_rows(cli.out, header, delivery_rows)
    if not letters and not delivery_rows:
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
    if _is_delivery(dlq_id):
        _replay_delivery(cli, dlq_id, as_json)
        return
    with open_app() as app:
        letter, request = prepare_letter_replay(app.store, dlq_id)
        check_requirements(request.plan.workflow, request.started.env_overrides)
        if app.store.remove_dead_letter(dlq_id) is None:
            raise UsageError(f"dead letter {dlq_id!r} was taken by someone else just now")
        run_id = new_run_id()
        if not as_json:
            say_replaying(cli, letter.step_id, letter.run_id, run_id)
        exit_with(drive_new(cli, app, request, run_id, as_json))


def say_replaying(cli: CliContext, step_id: str, run_id: str, new_run_id: str) -> None:
    cli.err.print(
        f"replaying {step_id} of run {run_id} as run {new_run_id}", soft_wrap=True, markup=False
    )


def _is_delivery(dlq_id: str) -> bool:
    """A dead delivery's id ('<env>/<message seq>/<step>') rather than a run's dead letter."""
    with open_app() as app:
        if any(letter.dlq_id == dlq_id for letter in app.store.dead_letters(limit=100_000)):
            return False
        dead = app.store.list_deliveries(status="dead", limit=100_000)
        return any(delivery.delivery_id == dlq_id for delivery in dead)


def _replay_delivery(cli: CliContext, delivery_id: str, as_json: bool) -> None:
    """Make a dead delivery due again with fresh attempts; 'wayang dev' (or 'wayang emit')
    delivers it."""
    with open_app() as app:
        replayed = app.store.replay_delivery(delivery_id, time.time())
    if replayed is None:
        raise UsageError(
            f"no dead delivery {delivery_id!r}; 'wayang dlq list' shows the dead letters"
        )
    if as_json:
        click.echo(json_text(delivery_json(replayed)))
        return
    cli.out.print(
        f"delivery {delivery_id} of '{replayed.topic}' to {replayed.step} is due again; "
        "the 'wayang dev' serving this store delivers it",
        soft_wrap=True,
        markup=False,
    )
