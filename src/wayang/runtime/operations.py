"""What the CLI (and later the server) does with runs, built on the engine and the store.

Starting a run from a file, resuming, retrying, cancelling, reading a run's state: each is a
small function here so every interface does it the same way.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wayang.engine import events as ev
from wayang.engine.gate import PolicyRequest
from wayang.engine.runplan import RunPlan
from wayang.engine.state import RunState, StepStatus, fold
from wayang.errors import UsageError
from wayang.model.loader import load_workflow, parse_workflow
from wayang.model.plan import plan_workflow
from wayang.model.spec import Workflow
from wayang.model.validate import build_graph
from wayang.policy import gate_for, project_policy
from wayang.runtime.names import CANCEL_REQUESTS, RunNotFoundError
from wayang.runtime.owner import owner_is_gone
from wayang.runtime.records import read_events, to_new_event
from wayang.store.port import DEFAULT_TENANT, Append, DeadLetter, RunRecord, Store

_ENV_REFERENCE = re.compile(r"\benv\.([A-Za-z_][A-Za-z0-9_]*)")

PolicyLookup = Callable[[str, Mapping[str, str]], tuple[str, str]]
"""Finds the project policy file (text, name) for a workflow file name and an environment."""


@dataclass(frozen=True)
class RunRequest:
    """A run ready to start: the plan it is pinned to, its first event, and reused outputs."""

    plan: RunPlan
    started: ev.RunStarted
    reuse: Mapping[str, dict[str, Any]]


def request_payload(request: RunRequest, run_id: str) -> str:
    """A prepared run as JSON text: its id, first event and reused outputs (what a background
    driver reads on stdin, and what the server's queue keeps until the run starts)."""
    return json.dumps(
        {"run_id": run_id, "started": request.started.to_data(), "reuse": dict(request.reuse)}
    )


def read_request_payload(text: str) -> tuple[str, ev.RunStarted, dict[str, dict[str, Any]]]:
    data = json.loads(text)
    started = ev.from_record(ev.RunStarted.TYPE, ev.EVENT_VERSION, data["started"])
    if not isinstance(started, ev.RunStarted):
        raise UsageError("the payload does not hold a run")
    return str(data["run_id"]), started, dict(data.get("reuse") or {})


def prepare_run(
    path: str | Path,
    params: Mapping[str, str],
    env_overrides: Mapping[str, str],
    *,
    parallel: int,
    timeout_s: float | None,
    environ: Mapping[str, str] | None = None,
    now: float | None = None,
) -> RunRequest:
    """Load, validate and plan ``path`` with text parameters; raises what validation finds."""
    file = Path(path)
    workflow = load_workflow(file)
    source = file.read_text("utf-8")
    return _request(
        workflow,
        source,
        str(file),
        params,
        env_overrides,
        parallel=parallel,
        timeout_s=timeout_s,
        environ=os.environ if environ is None else environ,
        cwd=str(file.resolve().parent),
        now=time.time() if now is None else now,
        params_are_text=True,
    )


def prepare_source_run(
    source: str,
    filename: str,
    params: Mapping[str, Any],
    env_overrides: Mapping[str, str],
    *,
    cwd: str,
    parallel: int,
    timeout_s: float | None,
    actor: str,
    params_are_text: bool = False,
    environ: Mapping[str, str] | None = None,
    now: float | None = None,
    workflow: Workflow | None = None,
    policy_of: PolicyLookup = project_policy,
) -> RunRequest:
    """Like :func:`prepare_run`, for a definition given as text (a server's API): ``params``
    are JSON values unless ``params_are_text`` (the CLI's ``-p name=value``). ``workflow`` is
    ``source`` already parsed, when the caller has it; ``policy_of`` finds the project policy
    file (a server passes a :class:`~wayang.policy.PolicyFiles` that remembers it)."""
    workflow = workflow or parse_workflow(source, filename)
    return _request(
        workflow,
        source,
        filename,
        params,
        env_overrides,
        parallel=parallel,
        timeout_s=timeout_s,
        environ=os.environ if environ is None else environ,
        cwd=cwd,
        now=time.time() if now is None else now,
        params_are_text=params_are_text,
        actor=actor,
        policy_of=policy_of,
    )


def _request(
    workflow: Workflow,
    source: str,
    filename: str,
    params: Mapping[str, Any],
    env_overrides: Mapping[str, str],
    *,
    parallel: int,
    timeout_s: float | None,
    environ: Mapping[str, str],
    cwd: str,
    now: float,
    params_are_text: bool,
    retry_of: str = "",
    reuse: Mapping[str, dict[str, Any]] | None = None,
    actor: str | None = None,
    parent: str = "",
    policy_of: PolicyLookup = project_policy,
    workspace: Mapping[str, Any] | None = None,
) -> RunRequest:
    # Only the variables the definition reads are pinned in the history, not the whole
    # environment: it is stored, and may hold secrets that nothing here uses.
    env = {name: environ[name] for name in _referenced_env(source) if name in environ}
    plan = plan_workflow(
        workflow,
        params,
        environ=env,
        env_overrides=env_overrides,
        params_are_text=params_are_text,
    )
    actor = actor or current_actor(environ)
    policy_source, policy_filename = policy_of(filename, environ)
    started = ev.RunStarted(
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        source=source,
        filename=filename,
        params=dict(plan.params),
        env=env,
        env_overrides=dict(env_overrides),
        at=now,
        timeout_s=timeout_s,
        parallel=parallel,
        cwd=cwd,
        retry_of=retry_of,
        actor=actor,
        policy_source=policy_source,
        policy_filename=policy_filename,
        parent=parent,
        workspace=dict(workspace or {}),
    )
    started = _under_policy(workflow, started)
    run_plan = RunPlan.build(workflow, started, gate_for, plan=plan)
    return RunRequest(run_plan, started, dict(reuse or {}))


def current_actor(environ: Mapping[str, str]) -> str:
    """Who is acting: ``$WAYANG_USER``, else the operating-system user."""
    return environ.get("WAYANG_USER") or getpass.getuser()


def _under_policy(workflow: Workflow, started: ev.RunStarted) -> ev.RunStarted:
    """The actor's roles, the policy's limits, and the check that the actor may start it."""
    gate = gate_for(workflow, started)
    roles_of = getattr(gate, "roles_of", None)
    roles = list(roles_of(started.actor)) if roles_of is not None else []
    limits = getattr(gate, "max_parallel", None), getattr(gate, "max_duration", None)
    parallel = _at_most(started.parallel or None, limits[0])
    timeout = _at_most(started.timeout_s, limits[1])
    scope = {"params": started.params, "env": {**started.env, **started.env_overrides}}
    request = PolicyRequest("start", actor=started.actor, roles=tuple(roles), scope=scope)
    verdict = gate.check(request)
    if not verdict.allowed:
        raise UsageError(
            f"policy rule '{verdict.rule}' does not let {started.actor} start "
            f"'{workflow.id}': {verdict.reason}"
        )
    return replace(started, actor_roles=roles, parallel=int(parallel or 0), timeout_s=timeout)


def _at_most(value: float | None, limit: float | None) -> float | None:
    if limit is None:
        return value
    return limit if value is None else min(value, limit)


def _referenced_env(source: str) -> list[str]:
    return sorted(set(_ENV_REFERENCE.findall(source)))


# ------------------------------------------------------------------------------ reading runs


@dataclass(frozen=True)
class RunView:
    """A run as stored: its summary row, its history and the state that history folds to."""

    record: RunRecord
    history: list[ev.Event]
    state: RunState


def load_run(store: Store, run_id: str, tenant: str = DEFAULT_TENANT) -> RunView:
    record = store.get_run(run_id, tenant)
    if record is None:
        raise RunNotFoundError(f"no run {run_id!r} in this store; 'wayang runs' lists runs")
    history = read_events(store.load_history(run_id))
    return RunView(record, history, fold(run_id, history))


def latest_run(store: Store, tenant: str = DEFAULT_TENANT) -> str:
    runs = store.list_runs(limit=1, tenant=tenant)
    if not runs:
        raise UsageError("this store has no runs yet; start one with 'wayang run FILE'")
    return runs[0].run_id


# ------------------------------------------------------------------------------ retrying


def prepare_retry(
    store: Store,
    run_id: str,
    from_step: str | None = None,
    *,
    now: float | None = None,
    tenant: str = DEFAULT_TENANT,
) -> RunRequest:
    """A new run of ``run_id``'s pinned definition and inputs, reusing its succeeded steps.

    With ``from_step``, that step and every step after it (its dependents) run again even if
    they succeeded. Only a finished run can be retried.
    """
    view = load_run(store, run_id, tenant)
    started = view.state.started
    if started is None:
        raise UsageError(f"run {run_id} has no recorded start; it cannot be retried")
    if not view.state.finished:
        raise UsageError(
            f"run {run_id} is still {view.state.status.value}; retry a finished run, or "
            f"'wayang resume {run_id}' to continue this one"
        )
    workflow = parse_workflow(started.source, started.filename)
    rerun = _from_step_onwards(workflow, from_step) if from_step else set()
    reuse = {
        step_id: step.outputs
        for step_id, step in view.state.steps.items()
        if step.status is StepStatus.SUCCEEDED and step_id not in rerun
    }
    return _request(
        workflow,
        started.source,
        started.filename,
        started.params,
        started.env_overrides,
        parallel=started.parallel,
        timeout_s=started.timeout_s,
        environ=started.env,
        cwd=started.cwd,
        now=time.time() if now is None else now,
        params_are_text=False,
        retry_of=run_id,
        reuse=reuse,
        # At the same change, in a workspace of its own (or the same named one).
        workspace=started.workspace,
    )


def _from_step_onwards(workflow: Workflow, step_id: str) -> set[str]:
    if step_id not in workflow.steps:
        known = ", ".join(workflow.steps)
        raise UsageError(f"--from: the workflow has no step {step_id!r}; its steps are: {known}")
    graph = build_graph(workflow)
    return {step_id} | {later for later in workflow.steps if graph.is_ancestor(step_id, later)}


# ------------------------------------------------------------------------------ cancelling


def request_cancel(
    store: Store, run_id: str, reason: str, tenant: str = DEFAULT_TENANT
) -> RunRecord:
    """Leave a cancel request for the engine driving ``run_id``; returns the run's row.

    The caller adopts the run itself (to cancel it) when :func:`needs_adoption` says nobody
    drives it.
    """
    record = store.get_run(run_id, tenant)
    if record is None:
        raise RunNotFoundError(f"no run {run_id!r} in this store; 'wayang runs' lists runs")
    store.kv_set(CANCEL_REQUESTS, run_id, reason)
    return record


def record_unstarted_cancel(
    store: Store,
    run_id: str,
    started: ev.RunStarted,
    reason: str,
    *,
    now: float,
    tenant: str = DEFAULT_TENANT,
) -> list[ev.Event]:
    """Record a run cancelled before it started (taken off a server's queue): its row and a
    history of its start and its cancel, so it is listed, shown and streamed like any other
    cancelled run. Returns the events written."""
    events: list[ev.Event] = [started, ev.RunCancelled(reason=reason, at=now)]
    record = RunRecord(
        run_id=run_id,
        workflow_id=started.workflow_id,
        status="cancelled",
        created_at=started.at,
        updated_at=now,
        spec={"version": started.workflow_version, "filename": started.filename},
        tenant=tenant,
    )
    store.create_run(record, Append(run_id, 0, [to_new_event(e) for e in events]))
    return events


def needs_adoption(record: RunRecord, now: float) -> bool:
    """True when no live engine drives the run: no owner, a lapsed lease, or a dead process."""
    lapsed = record.lease_expires_at is None or record.lease_expires_at <= now
    return lapsed or owner_is_gone(record.owner)


# ------------------------------------------------------------------------------ dead letters

_EVERY_LETTER = 1_000_000


def prepare_letter_replay(
    store: Store, dlq_id: str, *, now: float | None = None, tenant: str = DEFAULT_TENANT
) -> tuple[DeadLetter, RunRequest]:
    """Dead letter ``dlq_id`` and the run that replays it: a retry of its run from its step.

    Refused when there is no such letter or its run has not finished. The letter stays in the
    store: the caller takes it (``store.remove_dead_letter``) just before starting the run.
    """
    letters = store.dead_letters(tenant, limit=_EVERY_LETTER)
    letter = next((found for found in letters if found.dlq_id == dlq_id), None)
    if letter is None:
        raise UsageError(f"no dead letter {dlq_id!r}; 'wayang dlq list' shows their ids")
    state = load_run(store, letter.run_id, tenant).state
    if not state.finished:
        raise UsageError(
            f"dead letter {dlq_id!r} belongs to run {letter.run_id}, which is still "
            f"{state.status.value}; replay it once that run has ended"
        )
    return letter, prepare_retry(store, letter.run_id, letter.step_id, now=now, tenant=tenant)


def prepare_child_run(
    parent: ev.RunStarted, ref: str, params: Mapping[str, Any], parent_step: str
) -> RunRequest:
    """The run of a subworkflow step: ``ref`` is a file path (relative to the parent's folder)
    or a workflow id found beside it; it runs as the parent's actor with the parent's overrides.
    """
    file = resolve_workflow_ref(Path(parent.cwd or "."), ref)
    workflow = load_workflow(file)
    return _request(
        workflow,
        file.read_text("utf-8"),
        str(file),
        params,
        parent.env_overrides,
        parallel=parent.parallel,
        timeout_s=None,
        environ=os.environ,
        cwd=str(file.resolve().parent),
        now=time.time(),
        params_are_text=False,
        actor=parent.actor,
        parent=parent_step,
        workspace=_borrowed_workspace(parent, parent_step, file),
    )


def _borrowed_workspace(parent: ev.RunStarted, parent_step: str, file: Path) -> dict[str, Any]:
    """A child run works in its parent's workspace: same id, in the child's own folder there,
    leaving the workspace's status and run to the parent (``borrowed``)."""
    plan = parent.workspace
    if not plan:
        return {}
    folder = file.resolve().parent
    repository = Path(str(plan.get("repository", "")))
    inside = folder.is_relative_to(repository)
    subdir = folder.relative_to(repository).as_posix() if inside else plan.get("subdir", "")
    workspace_id = plan.get("id") or parent_step.split("/", 1)[0]
    return {**plan, "id": workspace_id, "subdir": subdir, "borrowed": True}


def resolve_workflow_ref(folder: Path, ref: str) -> Path:
    """A subworkflow's file: a path, else ``<id>/workflow.toml`` or ``<id>.toml`` nearby."""
    candidates = [folder / ref]
    if "/" not in ref and not ref.endswith(".toml"):
        for base in (folder, folder.parent):
            candidates += [base / ref / "workflow.toml", base / f"{ref}.toml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise UsageError(f"subworkflow '{ref}' not found (looked for {tried})")
