"""Benchmark the expression language: microseconds per evaluation and per (uncached) compile.

Run with ``.venv/bin/python bench/expr_bench.py``; prints one JSON line per case::

    {"bench": "expr", "case": "...", "us_per_eval": 0.6, "us_per_compile": 9.1}

The target is at most 20 µs per evaluation of a typical expression (aim: 1-5 µs).
"""

from __future__ import annotations

import json
import shlex
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

from wayang.model import expr
from wayang.model.expr import compile_expression, compile_template

SCOPE: dict[str, Any] = {
    "params": {
        "env": "prod",
        "tags": ["a", "b", "x"],
        "image": "registry.example.com/app",
        "flag": False,
        "count": 3,
        "nested": {"a": [1, 2, {"b": "c"}], "d": None},
    },
    "steps": {
        "build": {"outputs": {"ok": "yes", "tag": "v1.2.3"}, "status": "succeeded"},
        "build-docker": {"outputs": {"tag": "sha-1234"}},
    },
    "env": {"HOME": "/home/wayang"},
    "run": {"id": "r-1"},
}

EXPRESSIONS = {
    "eq_and": "params.env == 'prod' and steps.build.outputs.ok == 'yes'",
    "contains": "contains(params.tags, 'x')",
    "in_list": "'x' in params.tags",
    "hyphen_path": "steps.build-docker.outputs.tag",
    "dynamic_index": "steps[params.env == 'prod' and 'build' or 'other'].status",
    "not_or_order": "not params.flag or params.count >= 3",
    "format": "format('{0}:{1}', params.image, steps.build.outputs.tag)",
    "tojson": "tojson(params.nested)",
}
TEMPLATE = (
    "docker push ${{ params.image }}:${{ steps.build.outputs.tag }} --label env=${{ params.env }}"
)


def _per_call_us(call: Callable[[], object]) -> float:
    """Best of several runs, each sized to take about 50 ms, in microseconds per call."""
    timer = timeit.Timer(call)
    number = 1
    while timer.timeit(number) < 0.05:
        number *= 2
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def _uncached(compile_text: Callable[[str], object], text: str) -> Callable[[], object]:
    # compile_expression caches by source text; clear the cache to time real compiles.
    def compile_cold() -> object:
        expr._compile_cached.cache_clear()
        return compile_text(text)

    return compile_cold


def _report(case: str, us_per_eval: float, us_per_compile: float) -> None:
    line = {
        "bench": "expr",
        "case": case,
        "us_per_eval": round(us_per_eval, 3),
        "us_per_compile": round(us_per_compile, 3),
    }
    print(json.dumps(line, separators=(",", ":")), flush=True)


def main() -> None:
    for case, source in EXPRESSIONS.items():
        expression = compile_expression(source)
        expression.evaluate(SCOPE)  # fail fast if a case is broken
        _report(
            case,
            _per_call_us(partial(expression.evaluate, SCOPE)),
            _per_call_us(_uncached(compile_expression, source)),
        )
    template = compile_template(TEMPLATE)
    _report(
        "template_render_shlex",
        _per_call_us(partial(template.render, SCOPE, quote=shlex.quote)),
        _per_call_us(_uncached(compile_template, TEMPLATE)),
    )


if __name__ == "__main__":
    main()
