"""The same condition evaluated by Wayang's expression language and by the libraries a user might
pick instead (simpleeval, Jinja2's sandbox), in one process. Peers are optional: install them in
the interpreter that runs this script (see docs/performance.md).

Run: python bench/expr_peers.py   (with wayang importable, e.g. PYTHONPATH=src)
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from typing import Any

from wayang.model.expr import compile_expression

SCOPE: dict[str, Any] = {
    "params": {"env": "prod", "tags": ["a", "b"]},
    "steps": {"build": {"outputs": {"ok": "yes"}, "status": "succeeded"}},
}
SOURCE = "params.env == 'prod' and steps.build.outputs.ok == 'yes'"


def per_call_us(function: Callable[[], Any], number: int = 20_000) -> float:
    best = min(timeit.repeat(function, number=number, repeat=5))
    return round(best / number * 1e6, 3)


def emit(engine: str, **figures: float) -> None:
    print(json.dumps({"bench": "expr-peers", "engine": engine, "expr": SOURCE, **figures}))


def wayang_case() -> None:
    compiled = compile_expression(SOURCE)
    assert compiled.evaluate(SCOPE) is True
    emit("wayang", us_per_eval=per_call_us(lambda: compiled.evaluate(SCOPE)))


def simpleeval_case() -> None:
    try:
        from simpleeval import EvalWithCompoundTypes  # noqa: PLC0415 — an optional peer
    except ImportError:
        return
    evaluator = EvalWithCompoundTypes(names=SCOPE)
    source = "params['env'] == 'prod' and steps['build']['outputs']['ok'] == 'yes'"
    assert evaluator.eval(source) is True
    emit("simpleeval", us_per_eval=per_call_us(lambda: evaluator.eval(source)))


def jinja_case() -> None:
    try:
        from jinja2.sandbox import SandboxedEnvironment  # noqa: PLC0415 — an optional peer
    except ImportError:
        return
    compiled = SandboxedEnvironment().compile_expression(SOURCE)
    assert compiled(**SCOPE) is True
    emit("jinja2-sandbox", us_per_eval=per_call_us(lambda: compiled(**SCOPE)))


if __name__ == "__main__":
    wayang_case()
    simpleeval_case()
    jinja_case()
