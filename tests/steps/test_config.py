"""Motia-style config dicts (and their handlers) become StepDefs, or diagnostics at their lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from wayang.errors import Diagnostic, Severity
from wayang.steps.config import MISSING, StepSource, step_from_config
from wayang.steps.model import Emit, PayloadError, RetryRule, StepDef

SOURCE = StepSource(Path("steps/x.step.py"), line=3, handler_line=20)


class Order(BaseModel):
    id: str


class Other(BaseModel):
    name: str


async def event_handler(input, ctx):
    pass


def sync_event_handler(input, ctx):
    pass


async def api_handler(req, ctx):
    pass


async def cron_handler(ctx):
    pass


def model_handler(input: Order, ctx):
    pass


def unresolvable_handler(input: Missing, ctx):  # noqa: F821 - the point of the test
    pass


def load(config: Any, handler: Any = MISSING) -> tuple[StepDef | None, list[Diagnostic]]:
    return step_from_config(config, handler, SOURCE)


def ok(config: Any, handler: Any = MISSING) -> StepDef:
    step, diagnostics = load(config, handler)
    assert step is not None, [d.format() for d in diagnostics]
    assert not [d for d in diagnostics if d.severity is Severity.ERROR]
    return step


def problems(config: Any, handler: Any = MISSING) -> list[str]:
    _, diagnostics = load(config, handler)
    return [d.format() for d in diagnostics]


def event(**extra: Any) -> dict[str, Any]:
    return {"type": "event", "name": "ProcessOrder", "subscribes": ["order.created"]} | extra


def api(**extra: Any) -> dict[str, Any]:
    return {"type": "api", "name": "CreateOrder", "path": "/orders", "method": "POST"} | extra


# --- the four step types -----------------------------------------------------------------------


def test_a_motia_event_step() -> None:
    config = event(
        emits=["order.processed", {"topic": "order.flagged", "label": "odd", "conditional": True}],
        input={"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        flows=["orders"],
        description="Price the order",
        virtualEmits=["audit"],
        virtualSubscribes=["manual"],
    )
    step = ok(config, event_handler)
    assert step.name == "ProcessOrder"
    assert step.type == "event"
    assert step.where.line == 3 and str(step.where) == "steps/x.step.py:3"
    assert step.subscribes == ("order.created",)
    assert step.emits == (Emit("order.processed"), Emit("order.flagged", "odd", True))
    assert step.emit_topics == ("order.processed", "order.flagged")
    assert step.virtual_emits == (Emit("audit"),)
    assert step.virtual_subscribes == ("manual",)
    assert step.flows == ("orders",)
    assert step.description == "Price the order"
    assert step.handler is event_handler and step.handler_is_async
    assert step.handler_style == "dict"
    assert step.config is config
    assert step.retry == RetryRule() and not step.ordered
    assert step.input is not None
    assert step.input.validate({"id": "a"}) == {"id": "a"}
    with pytest.raises(PayloadError, match="id: is required"):
        step.input.validate({})


def test_a_sync_handler_is_not_awaited() -> None:
    assert not ok(event(), sync_event_handler).handler_is_async


def test_a_callable_object_with_an_async_call_is_async() -> None:
    class Handler:
        async def __call__(self, input: Any, ctx: Any) -> None:
            pass

    assert ok(event(), Handler()).handler_is_async


def test_a_motia_api_step() -> None:
    def auth(req: Any, ctx: Any, next: Any) -> Any:
        return next()

    config = api(
        path="/orders/:id",
        method="post",
        emits=["order.created"],
        bodySchema=Order,
        responseSchema={200: {"type": "object"}},
        queryParams=[{"name": "dryRun", "description": "validate only"}],
        middleware=[auth],
        flows=["orders"],
    )
    step = ok(config, api_handler)
    assert (step.type, step.method, step.path) == ("api", "POST", "/orders/:id")
    assert step.body_schema is not None and step.body_schema.model is Order
    assert step.response_schema == {200: {"type": "object"}}
    assert step.query_params == ({"name": "dryRun", "description": "validate only"},)
    assert step.middleware == (auth,)
    assert step.input is None


def test_a_motia_cron_step() -> None:
    step = ok({"type": "cron", "name": "Tick", "cron": "*/5 * * * *", "emits": ["t"]}, cron_handler)
    assert (step.type, step.cron, step.emit_topics) == ("cron", "*/5 * * * *", ("t",))


def test_a_motia_noop_step_has_no_handler() -> None:
    config = {"type": "noop", "name": "Review", "virtualEmits": ["ok"], "virtualSubscribes": ["x"]}
    step = ok(config)
    assert step.handler is None and step.virtual_emits == (Emit("ok"),)


def test_a_noop_step_with_a_handler_is_warned_about() -> None:
    step, diagnostics = load({"type": "noop", "name": "Review"}, event_handler)
    assert step is not None
    assert [d.format() for d in diagnostics] == [
        "steps/x.step.py:20:1: warning: step 'Review': noop steps have no handler, so this "
        "'handler' is never called; remove it, or make the step an event step"
    ]


# --- Wayang's own keys -------------------------------------------------------------------------


def test_retry_and_ordered() -> None:
    step = ok(
        event(retry={"attempts": 5, "delay": "2s", "backoff": 3, "maxDelay": 30}, ordered=True),
        event_handler,
    )
    assert step.retry == RetryRule(attempts=5, delay_s=2.0, backoff=3.0, max_delay_s=30.0)
    assert step.ordered
    assert ok(event(retry={"delay": 0.25}), event_handler).retry.delay_s == 0.25


@pytest.mark.parametrize(
    ("retry", "words"),
    [
        ({"attempts": 0}, "'attempts' must be a whole number of at least 1, not 0"),
        ({"attempts": True}, "'attempts' must be a whole number"),
        ({"delay": "soon"}, "invalid duration 'soon'"),
        ({"delay": -1}, "a duration cannot be negative"),
        ({"backoff": 0.5}, "'backoff' must be a number of at least 1"),
        ({"maxDelay": [1]}, "'maxDelay' must be a duration"),
        ("3 times", "'retry' must be a dict, not str"),
    ],
)
def test_bad_retry_is_an_error(retry: Any, words: str) -> None:
    found = problems(event(retry=retry), event_handler)
    assert len(found) == 1 and words in found[0] and "error" in found[0]
    assert '"retry": {"attempts": 5' in found[0]


def test_an_unknown_retry_key_is_a_warning() -> None:
    found = problems(event(retry={"attempt": 2}), event_handler)
    assert found == [
        "steps/x.step.py:3:1: warning: step 'ProcessOrder': unknown key 'attempt' in 'retry' is "
        "ignored; did you mean 'attempts'?"
    ]


# --- keys --------------------------------------------------------------------------------------


def test_an_unknown_key_is_a_warning_with_a_suggestion() -> None:
    step, diagnostics = load(event(subscribe=["x"]), event_handler)
    assert step is not None
    assert [d.format() for d in diagnostics] == [
        "steps/x.step.py:3:1: warning: step 'ProcessOrder': unknown key 'subscribe' is ignored; "
        "did you mean 'subscribes'?"
    ]
    assert diagnostics[0].code == "step-key"


def test_a_key_of_another_step_type_says_so() -> None:
    found = problems(event(cron="* * * * *", path="/x"), event_handler)
    assert "'cron' is a key of cron steps, not of event steps" in found[0]
    assert "'path' is a key of api steps, not of event steps" in found[1]


def test_motia_cloud_keys_are_explained() -> None:
    found = problems(event(infrastructure={"queue": {"type": "fifo"}}), event_handler)
    assert "use 'retry' and 'ordered'" in found[0] and "warning" in found[0]


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"name": "A", "subscribes": []}, "missing required key 'type'; set it to one of"),
        (
            event(type="evnt"),
            "'type' must be one of 'event', 'api', 'cron', 'noop', not 'evnt'; "
            "did you mean 'event'?",
        ),
        ({"type": "event", "subscribes": ["a"]}, "missing required key 'name'; add \"name\""),
        (event(name=""), "'name' must be a non-empty string, not str"),
        (event(name=5), "'name' must be a non-empty string, not int"),
        ({"type": "event", "name": "A"}, "missing required key 'subscribes'"),
        (
            event(subscribes="order.created"),
            "'subscribes' must be a list of non-empty strings, "
            'not str; write "subscribes": ["order.created"]',
        ),
        (
            event(flows="orders"),
            "'flows' must be a list of non-empty strings, not str; write \"flows\"",
        ),
        (event(emits="order.done"), "'emits' must be a list of topics, not str"),
        (event(emits=[5]), "'emits[0]' must be a topic string or"),
        (event(emits=[{"label": "x"}]), "'emits[0]' must be a topic string or"),
        (event(emits=[{"topic": "t", "conditional": "yes"}]), "'conditional' true or false"),
        (event(ordered="yes"), "'ordered' must be true or false, not str"),
        (event(description=3), "'description' must be a non-empty string, not int"),
        (event(input=5), "'input' must be a JSON Schema dict or a pydantic model class, not int"),
        (event(input={"type": "nope"}), "'input' is not a valid JSON Schema: Unknown type"),
        ("nope", "'config' must be a dict, not str"),
    ],
)
def test_missing_and_mistyped_keys_are_errors(config: Any, words: str) -> None:
    step, diagnostics = load(config, event_handler)
    assert step is None
    assert any(words in d.message for d in diagnostics), [d.message for d in diagnostics]
    assert all(d.file == "steps/x.step.py" and d.line == 3 for d in diagnostics)


def test_an_unknown_key_inside_an_emit_entry_is_a_warning() -> None:
    found = problems(event(emits=[{"topic": "t", "lable": "x"}]), event_handler)
    assert found == [
        "steps/x.step.py:3:1: warning: step 'ProcessOrder': unknown key 'lable' in 'emits[0]' "
        "is ignored"
    ]


def test_an_empty_subscribes_is_a_warning() -> None:
    found = problems(event(subscribes=[]), event_handler)
    assert found == [
        "steps/x.step.py:3:1: warning: step 'ProcessOrder': 'subscribes' is empty, so this step "
        "never runs"
    ]


# --- api and cron ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (api(path="orders"), "'path' 'orders' must start with '/'"),
        (api(path="/orders?x=1"), "declare query parameters in 'queryParams'"),
        (api(path="/orders/:1d"), "placeholder ':1d' that is not a name"),
        (api(path="/a/:id/b/:id"), "uses the same placeholder name twice"),
        (api(method="FETCH"), "'method' 'FETCH' is not an HTTP method"),
        (api(method="PUTT"), "did you mean 'PUT'?"),
        ({"type": "api", "name": "A", "path": "/a"}, "missing required key 'method'"),
        ({"type": "api", "name": "A", "method": "GET"}, "missing required key 'path'"),
        (api(responseSchema=[200]), "'responseSchema' must be a dict, not list"),
        (api(queryParams=["page"]), "'queryParams' must be a list of dicts with a 'name'"),
        (api(middleware=["auth"]), "'middleware' must be a list of functions"),
        (api(bodySchema={"type": 3}), "'bodySchema' is not a valid JSON Schema"),
    ],
)
def test_api_step_problems(config: dict[str, Any], words: str) -> None:
    step, diagnostics = load(config, api_handler)
    assert step is None
    assert any(words in d.message for d in diagnostics), [d.message for d in diagnostics]


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * * *", "has 6 fields but needs 5 (minute hour day-of-month month day-of-week)"),
        ("@hourly", "has 1 fields but needs 5"),
        ("61 * * * *", "is not a valid cron expression"),
        ("*/5 * * * mon-fry", "is not a valid cron expression"),
    ],
)
def test_an_invalid_cron_is_an_error(expression: str, words: str) -> None:
    config = {"type": "cron", "name": "Tick", "cron": expression}
    step, diagnostics = load(config, cron_handler)
    assert step is None
    assert diagnostics[0].code == "step-cron"
    assert f"'cron' {expression!r} {words}" in diagnostics[0].message


# --- handlers ----------------------------------------------------------------------------------


def test_a_missing_handler_is_an_error_at_the_config_line() -> None:
    assert problems(event()) == [
        "steps/x.step.py:3:1: error: step 'ProcessOrder': event steps need a handler; define "
        "`async def handler(input, ctx)` in this file"
    ]
    assert "`async def handler(req, ctx)`" in problems(api())[0]
    assert (
        "`async def handler(ctx)`"
        in problems({"type": "cron", "name": "T", "cron": "* * * * *"})[0]
    )


def test_a_handler_that_is_not_callable_is_an_error() -> None:
    assert "'handler' must be a function, not str" in problems(event(), "handler")[0]


def one(input):
    pass


def three(input, ctx, extra):
    pass


def keyword_only(input, ctx, *, flag):
    pass


def star(*args):
    pass


def defaults(input, ctx, extra=None, *, flag=False):
    pass


@pytest.mark.parametrize(
    ("kind", "handler", "words"),
    [
        ("event", one, "handler(input) takes 1 argument, but event steps call handler(input, ctx)"),
        ("event", three, "handler(input, ctx, extra) requires 3 arguments"),
        ("event", keyword_only, "has a required keyword-only parameter"),
        ("api", one, "but api steps call handler(req, ctx); define `async def handler(req, ctx)`"),
        ("cron", event_handler, "requires 2 arguments, but cron steps call handler(ctx)"),
    ],
)
def test_a_wrong_signature_is_an_error_at_the_handler_line(
    kind: str, handler: Any, words: str
) -> None:
    config = {
        "event": event(),
        "api": api(),
        "cron": {"type": "cron", "name": "T", "cron": "* * * * *"},
    }
    step, diagnostics = load(config[kind], handler)
    assert step is None
    assert [(d.line, d.code) for d in diagnostics] == [(20, "step-signature")]
    assert words in diagnostics[0].message


@pytest.mark.parametrize("handler", [star, defaults, print])
def test_flexible_signatures_are_accepted(handler: Any) -> None:
    ok(event(), handler)


def test_a_handler_annotating_a_model_gets_the_model() -> None:
    step = ok(event(), model_handler)
    assert step.handler_style == "model"
    assert step.input is not None and step.input.model is Order
    assert step.input.validate({"id": "a"}) == Order(id="a")


def test_a_json_schema_input_and_an_annotated_model_both_check() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string", "maxLength": 3}}}
    step = ok(event(input=schema), model_handler)
    assert step.input is not None and step.input.model is Order
    assert step.input.json_schema == schema
    assert step.input.validate({"id": "abc"}) == Order(id="abc")
    with pytest.raises(PayloadError, match="id: must be shorter"):
        step.input.validate({"id": "abcd"})
    with pytest.raises(PayloadError, match="id: Field required"):
        step.input.validate({})


def test_the_same_model_as_input_and_annotation_is_fine() -> None:
    assert ok(event(input=Order), model_handler).handler_style == "model"


def test_a_different_model_as_input_and_annotation_is_an_error() -> None:
    found = problems(event(input=Other), model_handler)
    assert "'input' is Other but the handler's first parameter is annotated Order" in found[0]


def test_an_unresolvable_annotation_is_a_warning_and_the_handler_gets_a_dict() -> None:
    step, diagnostics = load(event(), unresolvable_handler)
    assert step is not None and step.handler_style == "dict"
    assert diagnostics[0].severity is Severity.WARNING
    assert diagnostics[0].line == 20
    assert (
        "cannot resolve the annotation of the handler's 'input' (NameError"
        in diagnostics[0].message
    )


def test_non_model_annotations_mean_a_dict() -> None:
    def typed(input: dict[str, Any], ctx: object) -> None:
        pass

    assert ok(event(), typed).handler_style == "dict"


def test_api_and_cron_handlers_never_take_a_model() -> None:
    def create(req: Order, ctx: Any) -> None:
        pass

    assert ok(api(), create).handler_style == "dict"
