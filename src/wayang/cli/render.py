"""How the CLI shows diagnostics and plans: colour on a terminal, plain text otherwise."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wayang.errors import Diagnostic, Severity
from wayang.model.durations import format_duration
from wayang.model.plan import Plan, PlannedStep

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow"}


def print_diagnostics(console: Console, diagnostics: Sequence[Diagnostic]) -> None:
    """Each diagnostic as ``file:line:col: error: message``, then a count."""
    for item in diagnostics:
        where = f"{item.file}:{item.line}:{item.column}" if item.line else item.file
        style = _STYLE[item.severity]
        console.print(
            f"[bold]{escape(where)}[/]: [{style}]{item.severity.value}[/]: {escape(item.message)}",
            soft_wrap=True,
        )
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    if errors:
        console.print(f"[red]{errors} error{'s' if errors != 1 else ''}[/]", soft_wrap=True)


def print_plan(console: Console, plan: Plan, problems: Sequence[str]) -> None:
    """The plan as a table, then parameters and unmet requirements."""
    console.print(
        f"[bold]{escape(plan.workflow_name)}[/] ({escape(plan.workflow_id)} {plan.version}): "
        f"{len(plan.steps)} step{'s' if len(plan.steps) != 1 else ''}",
        soft_wrap=True,
    )
    if console.is_terminal:
        console.print(_plan_table(plan))
    else:
        _print_plain_steps(console, plan)
    if plan.params:
        params = ", ".join(f"{k}={v!r}" for k, v in plan.params.items())
        console.print(f"parameters: {escape(params)}", soft_wrap=True)
    for problem in problems:
        console.print(f"[yellow]requirement[/]: {escape(problem)}", soft_wrap=True)


def _plan_table(plan: Plan) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for column in ("#", "step", "kind", "needs", "does", "when", "timeout", "retry"):
        table.add_column(column, overflow="fold")
    for index, step in enumerate(plan.steps, start=1):
        table.add_row(str(index), *(escape(cell) for cell in _cells(step)))
    return table


def _print_plain_steps(console: Console, plan: Plan) -> None:
    """One block per step: readable in logs and pipes, where a table would be cut to 80 columns."""
    for index, step in enumerate(plan.steps, start=1):
        _, kind, needs, does, when, timeout, retry = _cells(step)
        console.print(f"{index}. {escape(step.id)} ({kind})", soft_wrap=True)
        if does:
            console.print(f"   {escape(does)}", soft_wrap=True)
        details = f"needs: {needs}  when: {when}  timeout: {timeout}  retry: {retry}"
        console.print(f"   {escape(details)}", soft_wrap=True)


def _cells(step: PlannedStep) -> tuple[str, ...]:
    timeout = format_duration(step.timeout_s) if step.timeout_s is not None else "-"
    retry = "-" if step.retry.attempts == 1 else f"{step.retry.attempts}× {step.retry.backoff}"
    return (
        step.id,
        step.kind,
        ", ".join(step.needs) or "-",
        _does(step),
        step.when or "-",
        timeout,
        retry,
    )


def _does(step: PlannedStep) -> str:
    if step.command is not None:
        return f"$ {step.command}"
    if step.run_template is not None:
        return f"$ {step.run_template.source}  (resolved at run time)"
    if step.uses is not None:
        return step.uses
    return ", ".join(f"{k}={v}" for k, v in step.config.items() if v not in (None, [], {}, ""))
