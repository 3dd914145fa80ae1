"""Keep the worker protocol in docs/workers.md honest: every JSON example of a request or an
answer is one the wire models accept (requests refuse unknown fields, so a renamed field fails)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel

from wayang import wire

DOC = Path(__file__).resolve().parents[2] / "docs" / "workers.md"
BLOCK = re.compile(r"^```json\n(?P<text>.*?)^```$", re.MULTILINE | re.DOTALL)

# Which model a JSON example is, told by the first of these fields it has (a heartbeat names
# its `tasks` too, so `state` comes first).
MODELS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("offers", wire.ClaimTasks),
    ("slots", wire.WorkerHello),
    ("state", wire.WorkerHeartbeat),
    ("fencing_token", wire.CompleteTask),
    ("lines", wire.TaskLogs),
    ("tasks", wire.ClaimedTasks),
    ("output", wire.CompleteTasks),
    ("completed", wire.TasksCompleted),
)


def test_every_json_example_of_the_protocol_fits_its_model() -> None:
    section = DOC.read_text("utf-8").split("## Workers over HTTP", 1)[1].split("\n## ", 1)[0]
    checked = set()
    for match in BLOCK.finditer(section):
        example = json.loads(match["text"])
        model = next((model for field, model in MODELS if field in example), None)
        assert model is not None, f"no model for the example {example}"
        model.model_validate(example)
        checked.add(model)
    assert checked == {model for _, model in MODELS}
