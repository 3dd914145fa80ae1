"""``wayang trace RUN``: a run's timeline as JSON, or as an OpenTelemetry trace (OTLP/JSON) to
print, write to a file or send to a collector.

The timeline is what ``GET /api/v1/runs/{id}/trace`` serves (:class:`wayang.wire.RunTrace`): read
from the store in this process (:func:`stored_trace`), or from the server by the twin
:func:`remote_trace`; both hand it to :func:`export`, so they print, write and send the same.
The OTLP encoding is :mod:`wayang.observe.otlp_json`: its ids are those of live tracing, so an
exported run joins the trace its live spans are in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import httpx

from wayang import wire
from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import open_app
from wayang.client import Client
from wayang.errors import UsageError, WayangError
from wayang.files import write_atomic
from wayang.observe.otlp_json import spans_of, trace_document
from wayang.server import views
from wayang.server.queue import Limits, RunQueue
from wayang.store.port import Store

FORMATS = ("json", "otlp")
TRACES_PATH = "/v1/traces"
SEND_TIMEOUT_S = 10.0
_BODY_EXCERPT = 200


class ExportError(WayangError):
    """The trace could not be written or sent (exit status 1)."""


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="json",
    show_default=True,
    help="json: the timeline as GET /api/v1/runs/RUN/trace gives it; otlp: an OpenTelemetry "
    "trace in OTLP/JSON (ExportTraceServiceRequest).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to FILE (replaced whole, never left half-written) instead of printing.",
)
@click.option(
    "--endpoint",
    metavar="URL",
    help="With --format otlp: POST the trace to the OTLP/HTTP collector at URL "
    f"(a URL without a path gets {TRACES_PATH}). The OTEL_EXPORTER_OTLP_* variables are "
    "not read here: pass the URL.",
)
@pass_cli
def trace(
    cli: CliContext, run_id: str, fmt: str, output: Path | None, endpoint: str | None
) -> None:
    """Export RUN's timeline: a span per step attempt and wait, from start to end.

    As JSON (the default), or with --format otlp as an OpenTelemetry trace whose trace and span
    ids are those live tracing gives the run, so it merges with spans exported while the run
    went on. Printed, written to --output FILE, or sent to a collector with --endpoint URL.

    \b
      wayang trace RUN
      wayang trace RUN --format otlp -o run.otlp.json
      wayang trace RUN --format otlp --endpoint http://localhost:4318
    """
    url = check_options(fmt, endpoint)
    with open_app() as app:
        found = stored_trace(app.store, run_id)
    export(cli, found, fmt, output, url)


def remote_trace(
    cli: CliContext,
    client: Client,
    *,
    run_id: str,
    fmt: str,
    output: Path | None,
    endpoint: str | None,
) -> None:
    """``wayang trace`` through a server: the same timeline, read from its API."""
    url = check_options(fmt, endpoint)
    export(cli, client.trace(run_id), fmt, output, url)


def stored_trace(store: Store, run_id: str) -> wire.RunTrace:
    """RUN's timeline read from ``store``, as the server's ``GET /runs/{id}/trace`` gives it
    (a run still in the server's queue has no spans yet)."""
    return views.trace_of(store, RunQueue(store, Limits()), run_id)


# ------------------------------------------------------------------------------ shared rendering


def check_options(fmt: str, endpoint: str | None) -> str | None:
    """The collector's traces URL of ``--endpoint`` (None without it); a usage error when it
    does not go with ``fmt`` or is not an http(s) URL."""
    if endpoint is None:
        return None
    if fmt != "otlp":
        raise UsageError(
            f"--endpoint sends an OpenTelemetry trace; add --format otlp (not --format {fmt})"
        )
    return traces_url(endpoint)


def traces_url(endpoint: str) -> str:
    """The URL to POST traces to: ``endpoint`` as given, or with ``/v1/traces`` when it has no
    path."""
    try:
        url = httpx.URL(endpoint)
    except httpx.InvalidURL as exc:
        raise UsageError(f"--endpoint {endpoint!r} is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(
            f"--endpoint {endpoint!r} is not an http(s) URL; give the collector's OTLP/HTTP "
            "address, such as http://localhost:4318"
        )
    if url.path in ("", "/"):
        url = url.copy_with(path=TRACES_PATH)
    return str(url)


def render(found: wire.RunTrace, fmt: str, now: float) -> dict[str, Any]:
    """The document ``wayang trace --format fmt`` prints: the timeline's JSON, or OTLP/JSON."""
    if fmt == "otlp":
        return trace_document(found, now=now)
    return found.model_dump(mode="json")


def export(
    cli: CliContext, found: wire.RunTrace, fmt: str, output: Path | None, url: str | None
) -> None:
    """Print ``found`` in ``fmt``, or write it to ``output`` and/or send it to ``url``."""
    document = render(found, fmt, time.time())
    if output is not None:
        write_output(output, pretty(document))
        cli.err.print(f"wrote the {fmt} trace of run {found.run_id} to {output}", markup=False)
    if url is not None:
        count = send(cli, document, url)
        click.echo(f"sent {count} spans of run {found.run_id} to {url}")
    if output is None and url is None:
        click.echo(pretty(document), nl=False)


def pretty(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def write_output(path: Path, text: str) -> None:
    """Write the trace to ``--output`` atomically, or say plainly why it cannot be."""
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(
            f"--output {path}: folder {folder} does not exist; create it or pick another file"
        )
    try:
        write_atomic(path, text)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ExportError(
            f"could not write the trace to {path}: {reason}; check the folder is writable"
        ) from None


def send(cli: CliContext, document: dict[str, Any], url: str) -> int:
    """POST the OTLP/JSON ``document`` to ``url``; how many spans it held."""
    count = len(spans_of(document))
    body = json.dumps(document, separators=(",", ":")).encode()
    try:
        response = httpx.post(
            url,
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=SEND_TIMEOUT_S,
        )
    except httpx.TimeoutException:
        raise ExportError(
            f"the collector at {url} did not answer within {SEND_TIMEOUT_S:g}s; "
            "check it runs and takes OTLP/HTTP"
        ) from None
    except httpx.TransportError as exc:
        raise ExportError(
            f"could not send the trace to {url}: {exc or type(exc).__name__}; "
            "check an OTLP/HTTP collector listens there"
        ) from None
    if not response.is_success:
        raise ExportError(
            f"the collector at {url} refused the trace: HTTP {response.status_code} "
            f"{response.reason_phrase}{_excerpt(response)}"
        )
    rejected, why = _rejected(response)
    if rejected:
        cli.err.print(
            f"warning: the collector at {url} rejected {rejected} of {count} spans: {why}",
            markup=False,
        )
    return count


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:_BODY_EXCERPT]
    return f": {text}" if text else ""


def _rejected(response: httpx.Response) -> tuple[int, str]:
    """The spans an OTLP collector says it dropped (its ``partialSuccess``), and why."""
    try:
        partial = response.json().get("partialSuccess") or {}
        return int(partial.get("rejectedSpans") or 0), str(partial.get("errorMessage") or "")
    except (ValueError, AttributeError, TypeError):  # not OTLP's JSON answer: nothing to say
        return 0, ""


__all__ = [
    "ExportError",
    "check_options",
    "export",
    "remote_trace",
    "render",
    "send",
    "stored_trace",
    "trace",
    "traces_url",
    "write_atomic",
]
