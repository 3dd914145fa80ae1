"""``wayang artifacts RUN``: the files a run kept, and whether their copies are still intact.

The copies live on this machine (:func:`wayang.workspace.artifacts.artifact_root`, derived from
the store), so the command reads them here even when a server is in use.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.markup import escape

from wayang.app import Settings
from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import STORE_KEY, json_text
from wayang.cli.run_render import local_time, print_rows
from wayang.workspace.artifacts import (
    ArtifactManifest,
    artifact_root,
    load_manifest,
    verify_artifacts,
)

HEADER = ("NAME", "PATH", "SIZE", "SHA256", "EXPIRES")
SHORT_SHA = 12
UNITS = ("KiB", "MiB", "GiB", "TiB")


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object for scripts.")
@click.option(
    "--verify", is_flag=True, help="Re-hash every copy; exit 1 if one has changed or is gone."
)
@pass_cli
def artifacts(cli: CliContext, run_id: str, as_json: bool, verify: bool) -> None:
    """List the files RUN kept from its workspace: name, path, size, sha256 and expiry.

    Artifacts are what a workflow declares under [artifacts]; they are copied when the run
    ends, to $WAYANG_ARTIFACTS, else the folder 'artifacts' beside the store's file. Exits 1
    when RUN has none, or with --verify when a copy no longer matches its sha256.
    """
    root = artifact_root(Settings.from_environment(_store_option()).store, os.environ)
    manifest = load_manifest(root, run_id)
    if manifest is None:
        cli.err.print(_no_manifest(run_id, root), soft_wrap=True, markup=False)
        raise click.exceptions.Exit(1)
    problems = verify_artifacts(manifest) if verify else []
    if as_json:
        click.echo(json_text(artifacts_json(manifest, problems if verify else None)))
    else:
        print_artifacts(cli, manifest)
        if verify:
            print_verdict(cli, manifest, problems)
    if problems:
        raise click.exceptions.Exit(1)


def _store_option() -> str | None:
    value = click.get_current_context().meta.get(STORE_KEY)
    return value if isinstance(value, str) else None


def _no_manifest(run_id: str, root: Path) -> str:
    return (
        f"run {run_id} has no collected artifacts under {root}: a run's artifacts are copied "
        "when it ends, from the [artifacts] its workflow.toml declares. Check the run id "
        "('wayang runs'), and that --store or $WAYANG_ARTIFACTS names where they were kept."
    )


def artifacts_json(manifest: ArtifactManifest, problems: list[str] | None) -> dict[str, object]:
    """The manifest as JSON; with ``problems`` (``--verify``) also ``verified`` and them."""
    data: dict[str, object] = manifest.to_json()
    if problems is not None:
        data["verified"] = not problems
        data["problems"] = problems
    return data


def print_artifacts(cli: CliContext, manifest: ArtifactManifest) -> None:
    """The table of kept files, then what was missing or refused."""
    rows = [
        [
            file.name,
            file.path,
            human_size(file.size),
            file.sha256[:SHORT_SHA],
            _expires(manifest.expires_at.get(file.name)),
        ]
        for file in manifest.files
    ]
    if rows:
        print_rows(cli.out, HEADER, rows)
    else:
        cli.out.print(f"run {manifest.run_id} kept no files", markup=False)
    for name in manifest.missing:
        cli.out.print(f"missing: {name} (matched no file it could keep)", markup=False)
    for why in manifest.refused:
        cli.out.print(f"refused: {why}", soft_wrap=True, markup=False)


def print_verdict(cli: CliContext, manifest: ArtifactManifest, problems: list[str]) -> None:
    """``--verify``: one line per copy that changed or is gone, else that all match."""
    for problem in problems:
        cli.err.print(f"[bold red]mismatch[/]: {escape(problem)}", soft_wrap=True)
    if not problems:
        count = len(manifest.files)
        which = "the 1 copy matches its" if count == 1 else f"all {count} copies match their"
        cli.out.print(f"verified: {which} sha256", markup=False)


def _expires(at: float | None) -> str:
    return "never" if at is None else local_time(at)


def human_size(size: int) -> str:
    """Bytes below 1 KiB, else a binary unit with one decimal: ``1.5 MiB``."""
    exponent = min((size.bit_length() - 1) // 10, len(UNITS)) if size >= 1024 else 0
    if exponent == 0:
        return f"{size} B"
    return f"{size / 1024**exponent:.1f} {UNITS[exponent - 1]}"
