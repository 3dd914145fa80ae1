"""parse_pinned: a definition pinned in a run's history, read back with the compiled parser."""

from __future__ import annotations

from pathlib import Path

import pytest
import rtoml

from wayang.errors import DefinitionError
from wayang.model import loader
from wayang.model.loader import parse_pinned, parse_workflow

EXAMPLES = sorted(Path(__file__).resolve().parents[2].glob("examples/*/workflow.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.parent.name)
def test_a_pinned_example_reads_as_the_full_parse_does(path: Path) -> None:
    text = path.read_text("utf-8")
    assert parse_pinned(text, str(path)) == parse_workflow(text, str(path))


def test_values_of_every_toml_type_read_alike() -> None:
    text = (
        'id = "kinds"\n'
        "[parameters.when]\n"
        'type = "string"\n'
        'description = """two\nlines"""\n'
        'default = "2026-11-21"\n'
        "[steps.a]\n"
        "run = \"echo 'a'\"\n"
        'timeout = "90s"\n'
        'retry = { attempts = 3, delay = "2s" }\n'
        "[steps.b]\n"
        'run = "echo ${{ params.when }}"\n'
        'needs = ["a"]\n'
    )
    assert parse_pinned(text) == parse_workflow(text)


def test_what_the_compiled_parser_refuses_tomllib_judges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuses(text: str) -> object:
        raise rtoml.TomlParsingError("refused")

    monkeypatch.setattr(loader.rtoml, "loads", refuses)
    text = 'id = "fallback"\n[steps.a]\nrun = "echo a"\n'
    assert parse_pinned(text) == parse_workflow(text)
    with pytest.raises(DefinitionError, match="invalid TOML"):
        parse_pinned('id = "broken"\n[steps.a\n')
