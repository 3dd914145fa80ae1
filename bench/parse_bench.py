"""Time parse + validate + plan on a large generated workflow; print one JSON line per figure.

Run: .venv/bin/python bench/parse_bench.py [--steps N]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from wayang.errors import DefinitionError
from wayang.model.loader import parse_workflow
from wayang.model.plan import plan_workflow


def generate(steps: int) -> str:
    """A chain of ``steps`` shell steps, each reading a parameter and its predecessor's output."""
    parts = ['id = "bench"\n[parameters.p]\ndefault = "v"\n']
    for index in range(steps):
        needs = f'needs = ["s{index - 1}"]\n' if index else ""
        reads = f" ${{{{ steps.s{index - 1}.outputs.x }}}}" if index else ""
        parts.append(f'[steps.s{index}]\n{needs}run = "echo ${{{{ params.p }}}}{reads}"\n')
    return "".join(parts)


def emit(case: str, **figures: float | int) -> None:
    print(json.dumps({"bench": "parse", "case": case, **figures}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    text = generate(args.steps)
    started = time.perf_counter()
    workflow = parse_workflow(text)
    parsed = time.perf_counter()
    plan_workflow(workflow)
    planned = time.perf_counter()
    broken = text.replace('needs = ["s5"]', 'needs = ["s5x"]', 1)
    failed_at = time.perf_counter()
    try:
        parse_workflow(broken)
    except DefinitionError as exc:
        assert exc.diagnostics
    diagnosed = time.perf_counter()
    size = len(text.encode())
    emit("validate", steps=args.steps, bytes=size, seconds=round(parsed - started, 3))
    emit("plan", steps=args.steps, seconds=round(planned - parsed, 3))
    emit("diagnose-one-error", steps=args.steps, seconds=round(diagnosed - failed_at, 3))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    emit("peak-rss", steps=args.steps, mib=round(peak_kib / 1024, 1))


if __name__ == "__main__":
    main()
