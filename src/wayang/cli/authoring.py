"""Authoring commands: ``init``, ``validate``, ``plan``, ``schema``."""

from __future__ import annotations

import json
import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import click

from wayang.cli.context import CliContext, pass_cli
from wayang.cli.render import print_plan
from wayang.errors import DefinitionError, UsageError
from wayang.files import write_atomic
from wayang.model.loader import load_workflow
from wayang.model.plan import plan_workflow
from wayang.model.schema import workflow_json_schema
from wayang.requirements import missing_requirements

TEMPLATES = ("basic", "release", "steps")
"""``basic`` and ``release`` write a workflow.toml; ``steps`` writes an event-steps project."""
STEPS_TEMPLATE = "steps"


def parse_assignments(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``("a=1", "b=x=y")`` → ``{"a": "1", "b": "x=y"}``; a clear error for anything else."""
    result: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{option} expects NAME=VALUE, got {item!r}")
        if name in result:
            raise UsageError(f"{option} {name} is given twice; pass it once")
        result[name] = value
    return result


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option(
    "--template",
    "-t",
    type=click.Choice(TEMPLATES),
    default="basic",
    show_default=True,
    help="Which starter to write: a workflow.toml (basic, release) or an event-steps project "
    "(steps).",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@pass_cli
def init(cli: CliContext, directory: Path, template: str, force: bool) -> None:
    """Scaffold a commented workflow.toml (and its JSON Schema for editors) in DIRECTORY.

    With '--template steps', scaffold an event-steps project instead: wayang.toml and a small
    flow in steps/ (an API step and an event step) that 'wayang dev' runs as it is.
    """
    if template == STEPS_TEMPLATE:
        _init_steps(cli, directory, force)
        return
    target = directory / "workflow.toml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; pass --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    text = _templates().joinpath(f"{template}.toml").read_text()
    write_atomic(directory / "workflow.schema.json", _schema_text())
    write_atomic(target, text)
    cli.out.print(f"created {target} from the '{template}' template", soft_wrap=True)
    cli.out.print(f"next: wayang validate {target} && wayang plan {target}", soft_wrap=True)


def _templates() -> Traversable:
    return resources.files("wayang.cli").joinpath("templates")


def _steps_template_files(folder: Traversable, prefix: str = "") -> dict[str, str]:
    """The steps template's files by their path in the new project (``*.tmpl`` names, with the
    suffix dropped; ``gitignore`` becomes ``.gitignore``)."""
    files: dict[str, str] = {}
    for entry in folder.iterdir():
        if entry.is_dir():
            files |= _steps_template_files(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".tmpl"):
            name = entry.name.removesuffix(".tmpl")
            files[prefix + ("." + name if name == "gitignore" else name)] = entry.read_text()
    return files


def _init_steps(cli: CliContext, directory: Path, force: bool) -> None:
    files = _steps_template_files(_templates().joinpath(STEPS_TEMPLATE))
    existing = sorted(name for name in files if (directory / name).exists())
    if existing and not force:
        listed = ", ".join(str(directory / name) for name in existing)
        verb = "exists" if len(existing) == 1 else "exist"
        raise UsageError(f"{listed} already {verb}; pass --force to overwrite")
    for name, text in sorted(files.items()):
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    created = f"created a steps project in {directory} from the 'steps' template"
    cli.out.print(created, soft_wrap=True, markup=False)
    cli.out.print(
        f"next: wayang dev --project {directory}, then curl -X POST localhost:3000/hello "
        "-H 'content-type: application/json' -d '{\"name\": \"Ann\"}'",
        soft_wrap=True,
        markup=False,
    )


@click.command()
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path), default="workflow.toml")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object for scripts.")
@pass_cli
def validate(cli: CliContext, file: Path, as_json: bool) -> None:
    """Check FILE (default ./workflow.toml) and report every problem with file:line:col."""
    try:
        workflow = load_workflow(file)
    except DefinitionError as exc:
        if not as_json:
            raise
        _print_json(
            cli,
            {
                "valid": False,
                "file": str(file),
                "diagnostics": [d.to_dict() for d in exc.diagnostics],
            },
        )
        raise click.exceptions.Exit(exc.exit_code) from None
    if as_json:
        _print_json(
            cli,
            {
                "valid": True,
                "file": str(file),
                "id": workflow.id,
                "steps": len(workflow.steps),
                "diagnostics": [],
            },
        )
        return
    count = len(workflow.steps)
    steps = f"{count} step{'s' if count != 1 else ''}"
    cli.out.print(f"{file}: valid — {workflow.id} {workflow.version}, {steps}", soft_wrap=True)


@click.command()
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path), default="workflow.toml")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter value (repeatable).",
)
@click.option(
    "--env",
    "-e",
    "envs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An environment override for every step (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@pass_cli
def plan(
    cli: CliContext, file: Path, params: tuple[str, ...], envs: tuple[str, ...], as_json: bool
) -> None:
    """Resolve FILE with parameters into the execution plan, and show it."""
    values = parse_assignments(params, "--param")
    overrides = parse_assignments(envs, "--env")
    workflow = load_workflow(file)
    environ = {**os.environ, **overrides}
    result = plan_workflow(
        workflow, values, environ=os.environ, env_overrides=overrides, params_are_text=True
    )
    problems = missing_requirements(workflow.requirements, environ)
    if as_json:
        _print_json(cli, {**result.to_dict(), "requirements": {"missing": problems}})
    else:
        print_plan(cli.out, result, problems)


@click.command()
@pass_cli
def schema(cli: CliContext) -> None:
    """Print the JSON Schema of workflow.toml (point editors at it with a #:schema comment)."""
    click.echo(_schema_text(), nl=False)


def _schema_text() -> str:
    return json.dumps(workflow_json_schema(), indent=2) + "\n"


def _print_json(cli: CliContext, data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


__all__ = ["init", "plan", "schema", "validate"]
