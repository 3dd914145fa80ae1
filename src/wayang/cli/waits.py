"""Commands for steps waiting on people: ``approvals``, ``approve``, ``reject``, ``offer``,
``accept``, ``decline``, ``complete``, and ``emit`` for events runs wait on.

A signal verb checks the signal against the run as stored (a refused one exits 2 and writes
nothing), puts it in the run's inbox, and waits for its answer: the engine driving the run answers
it, or, when no engine drives it, this process adopts the run, lets it take the signal and carries
it on until it waits again or ends. Exits 0 when the signal was accepted, 1 when it was rejected.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from wayang.app import App
from wayang.cli.authoring import parse_assignments
from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import json_text, open_app
from wayang.cli.run_render import iso_time, local_time, print_rows
from wayang.cli.steps import deliver_in_process, dev_server_running
from wayang.errors import UsageError
from wayang.ids import new_trace_id
from wayang.runtime.operations import current_actor
from wayang.runtime.signals import PendingWait, deliver, pending_waits, publish, send_signal
from wayang.store.port import SignalRecord

F = TypeVar("F", bound=Callable[..., Any])

AS_HELP = "Act as USER [default: $WAYANG_USER, else the operating-system user]."


def _as_option(function: F) -> F:
    return click.option("--as", "as_user", metavar="USER", help=AS_HELP)(function)


def _json_option(function: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object: seq, status, outcome."
    )(function)


def actor_of(as_user: str | None) -> str:
    """``--as USER``, else ``$WAYANG_USER``, else the operating-system user."""
    return as_user or current_actor(os.environ)


def parse_json(text: str, option: str, *, want_object: bool = False) -> Any:
    """``text`` as JSON; a clear error naming ``option`` and where the JSON went wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{option} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(char {exc.pos})"
        ) from None
    if want_object and not isinstance(value, dict):
        raise UsageError(f'{option} must be a JSON object, like \'{{"name": "value"}}\'')
    return value


# ------------------------------------------------------------------------------ approvals


@click.command("approvals")
@click.option("--mine", is_flag=True, help="Only the steps waiting for the acting user.")
@_as_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@pass_cli
def approvals(cli: CliContext, mine: bool, as_user: str | None, as_json: bool) -> None:
    """List pending approvals, negotiations and external steps, oldest first."""
    with open_app() as app:
        found = pending_waits(app.store, actor_of(as_user) if mine else None)
    print_waits(cli, found, as_json)


def print_waits(cli: CliContext, found: Sequence[PendingWait], as_json: bool) -> None:
    """What ``wayang approvals`` prints."""
    if as_json:
        click.echo(json_text([_wait_json(p) for p in found]))
    elif found:
        header = ("run", "workflow", "step", "kind", "since", "who", "prompt", "offer")
        print_rows(cli.out, header, [_wait_row(p) for p in found])
    else:
        cli.err.print("nothing is waiting", soft_wrap=True)


def _members(wait: dict[str, Any]) -> list[str]:
    return list(wait.get("assignees") or wait.get("parties") or [])


def _wait_json(pending: PendingWait) -> dict[str, Any]:
    wait = pending.wait
    data: dict[str, Any] = {
        "run_id": pending.run_id,
        "workflow_id": pending.workflow_id,
        "step_id": pending.step_id,
        "kind": pending.kind,
        "since": iso_time(pending.since),
        "who": _members(wait),
        "prompt": wait.get("prompt", ""),
    }
    if pending.kind == "approval":
        data["approvals"] = wait.get("approvals", [])
        data["quorum"] = wait.get("quorum")
        data["required_fields"] = wait.get("required_fields", [])
    if pending.kind == "negotiation":
        data["offer"] = wait.get("offer")
        data["round"] = wait.get("round", 0)
        data["max_rounds"] = wait.get("max_rounds")
    return data


def _wait_row(pending: PendingWait) -> list[str]:
    wait = pending.wait
    offer = ""
    if pending.kind == "negotiation":
        current = wait.get("offer")
        terms = json.dumps(current["terms"], sort_keys=True) if current else "(none yet)"
        by = f" by {current.get('party') or current.get('actor')}" if current else ""
        offer = f"round {wait.get('round', 0)}: {terms}{by}"
    return [
        pending.run_id,
        pending.workflow_id,
        pending.step_id,
        pending.kind,
        local_time(pending.since),
        ", ".join(_members(wait)) or "-",
        str(wait.get("prompt") or ""),
        offer,
    ]


# ------------------------------------------------------------------------------ signals


def signal_and_report(
    cli: CliContext,
    target: tuple[str, str],
    kind: str,
    data: dict[str, Any],
    *,
    as_user: str | None,
    as_json: bool,
) -> None:
    """Send the signal, wait for its answer, print it; exit 0 if accepted, 1 if rejected."""
    run_id, step_id = target
    actor = actor_of(as_user)
    with open_app() as app:
        seq = send_signal(app.store, run_id, step_id, kind=kind, actor=actor, data=data)
        answer = asyncio.run(_deliver(app, run_id, seq))
    report_answer(cli, seq, answer.status, answer.outcome, as_json)


def report_answer(cli: CliContext, seq: int, status: str, outcome: str, as_json: bool) -> None:
    """Print a signal's answer; exit 1 unless it was accepted."""
    accepted = status == "accepted"
    if as_json:
        click.echo(json_text({"seq": seq, "status": status, "outcome": outcome}))
    elif accepted:
        cli.out.print(outcome or f"signal {seq} accepted", soft_wrap=True, markup=False)
    else:
        cli.err.print(f"signal {seq} rejected: {outcome}", soft_wrap=True, markup=False)
    if not accepted:
        raise click.exceptions.Exit(1)


async def _deliver(app: App, run_id: str, seq: int) -> SignalRecord:
    async with app.engine() as engine:
        return await deliver(engine, run_id, seq)


@click.command("approve")
@click.argument("run_id", metavar="RUN")
@click.argument("step_id", metavar="STEP")
@click.option("--comment", metavar="TEXT", help="Why (required when the step asks for it).")
@click.option(
    "--field", "fields", multiple=True, metavar="NAME=VALUE", help="A field the step asks for."
)
@_as_option
@_json_option
@pass_cli
def approve(
    cli: CliContext,
    run_id: str,
    step_id: str,
    *,
    comment: str | None,
    fields: tuple[str, ...],
    as_user: str | None,
    as_json: bool,
) -> None:
    """Approve approval step STEP of run RUN.

    Exits 0 when the vote was recorded, 1 when the run rejected it, 2 when it cannot apply
    (not an assignee, a missing field, a decided step; nothing is recorded then).
    """
    values = parse_assignments(fields, "--field")
    data = {"comment": comment or "", "fields": values}
    signal_and_report(cli, (run_id, step_id), "approve", data, as_user=as_user, as_json=as_json)


@click.command("reject")
@click.argument("run_id", metavar="RUN")
@click.argument("step_id", metavar="STEP")
@click.option("--comment", metavar="TEXT", required=True, help="Why (required).")
@_as_option
@_json_option
@pass_cli
def reject(
    cli: CliContext, run_id: str, step_id: str, *, comment: str, as_user: str | None, as_json: bool
) -> None:
    """Reject approval step STEP of run RUN (exit statuses as for 'wayang approve')."""
    data = {"comment": comment, "fields": {}}
    signal_and_report(cli, (run_id, step_id), "reject", data, as_user=as_user, as_json=as_json)


@click.command("offer")
@click.argument("run_id", metavar="RUN")
@click.argument("step_id", metavar="STEP")
@click.option("--terms", metavar="JSON", required=True, help="The terms, a JSON object.")
@click.option("--comment", metavar="TEXT", help="A note with the offer.")
@_as_option
@_json_option
@pass_cli
def offer(
    cli: CliContext,
    run_id: str,
    step_id: str,
    *,
    terms: str,
    comment: str | None,
    as_user: str | None,
    as_json: bool,
) -> None:
    """Make an offer (or counter-offer) in negotiation step STEP of run RUN.

    Example: wayang offer RUN deal --terms '{"price": 50}' --as buyer
    """
    parsed = parse_json(terms, "--terms", want_object=True)
    data = {"terms": parsed, "comment": comment or ""}
    signal_and_report(cli, (run_id, step_id), "offer", data, as_user=as_user, as_json=as_json)


@click.command("accept")
@click.argument("run_id", metavar="RUN")
@click.argument("step_id", metavar="STEP")
@_as_option
@_json_option
@pass_cli
def accept(cli: CliContext, run_id: str, step_id: str, as_user: str | None, as_json: bool) -> None:
    """Accept the other party's current offer in negotiation step STEP of run RUN."""
    signal_and_report(cli, (run_id, step_id), "accept", {}, as_user=as_user, as_json=as_json)


@click.command("decline")
@click.argument("run_id", metavar="RUN")
@click.argument("step_id", metavar="STEP")
@click.option("--comment", metavar="TEXT", help="Why.")
@_as_option
@_json_option
@pass_cli
def decline(
    cli: CliContext,
    run_id: str,
    step_id: str,
    *,
    comment: str | None,
    as_user: str | None,
    as_json: bool,
) -> None:
    """Decline negotiation step STEP of run RUN, ending the negotiation."""
    signal_and_report(
        cli,
        (run_id, step_id),
        "decline",
        {"comment": comment or ""},
        as_user=as_user,
        as_json=as_json,
    )


@click.command("complete")
@click.argument("run_id", metavar="RUN")
@click.argument("step_id", metavar="STEP")
@click.option("--outputs", metavar="JSON", required=True, help="The step's outputs, a JSON object.")
@_as_option
@_json_option
@pass_cli
def complete(
    cli: CliContext, run_id: str, step_id: str, *, outputs: str, as_user: str | None, as_json: bool
) -> None:
    """Complete external step STEP of run RUN with OUTPUTS.

    Example: wayang complete RUN ticket --outputs '{"ticket": "T-1"}'
    """
    parsed = parse_json(outputs, "--outputs", want_object=True)
    signal_and_report(
        cli, (run_id, step_id), "complete", {"outputs": parsed}, as_user=as_user, as_json=as_json
    )


# ------------------------------------------------------------------------------ events


@click.command("emit")
@click.argument("topic")
@click.option("--data", metavar="JSON", required=True, help="The event's data, as JSON.")
@click.option("--key", metavar="KEY", default="", help="A key runs can correlate on.")
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The steps project to deliver to (default: found from the current folder).",
)
@click.option("--no-deliver", is_flag=True, help="Only publish; leave deliveries to 'wayang dev'.")
@click.option(
    "--wait", "wait_s", type=float, default=30.0, show_default=True,
    help="Seconds to wait for in-process deliveries to finish.",
)  # fmt: skip
@_as_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: seq, topic, trace.")
@pass_cli
def emit(
    cli: CliContext,
    topic: str,
    *,
    data: str,
    key: str,
    project_dir: Path | None,
    no_deliver: bool,
    wait_s: float,
    as_user: str | None,
    as_json: bool,
) -> None:
    """Publish an event on TOPIC (starting a trace); print its sequence number.

    Runs waiting on TOPIC take it when next driven (their engine looks every 0.2 s; 'wayang
    resume RUN' drives a run nobody drives). Event steps subscribed to TOPIC get it: from the
    'wayang dev' serving this store when one runs, else here, in this process, until every
    delivery it causes is done (--no-deliver only publishes).
    """
    value = parse_json(data, "--data")
    trace_id = new_trace_id()
    with open_app() as app:
        seq = publish(app.store, topic, value, actor=actor_of(as_user), key=key, trace_id=trace_id)
        report_emitted(cli, seq, topic, trace_id, as_json)
        from wayang.steps.project import load_project  # noqa: PLC0415 - see cli.steps

        env = load_project(project_dir).config.environment
        if not no_deliver and dev_server_running(app, env) is None:
            deliver_in_process(cli, app, project_dir, wait_s, quiet=as_json)


def report_emitted(cli: CliContext, seq: int, topic: str, trace_id: str, as_json: bool) -> None:
    """What ``wayang emit`` prints: the message's sequence number and its trace."""
    if as_json:
        click.echo(json_text({"seq": seq, "topic": topic, "trace_id": trace_id}))
    else:
        click.echo(str(seq))
        cli.err.print(f"trace {trace_id}", soft_wrap=True, markup=False)


COMMANDS = (approvals, approve, reject, offer, accept, decline, complete, emit)
