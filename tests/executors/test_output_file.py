"""The $WAYANG_OUTPUT file: JSON or key=value lines with heredocs, and errors that point at a line."""

from __future__ import annotations

import pytest

from wayang.executors.output_file import OutputFileError, parse_output_file


def test_key_value_lines_keep_the_value_verbatim_after_the_first_equals() -> None:
    text = "a=1\nurl=https://x?y=z\n\n# a comment\n  # indented comment\nspaced=  two  \nempty=\n"
    assert parse_output_file(text) == {
        "a": "1",
        "url": "https://x?y=z",
        "spaced": "  two  ",
        "empty": "",
    }


def test_a_later_line_for_the_same_key_wins() -> None:
    assert parse_output_file("v=1\nv=2") == {"v": "2"}


def test_one_json_object_keeps_its_types() -> None:
    text = '\n  {"files": 12, "ok": true, "tags": ["a"], "none": null}\n'
    assert parse_output_file(text) == {"files": 12, "ok": True, "tags": ["a"], "none": None}


def test_an_empty_file_has_no_outputs() -> None:
    assert parse_output_file("") == {}
    assert parse_output_file("\n\n") == {}


def test_heredoc_values_span_lines() -> None:
    text = "before=1\nnotes<<EOF\nfirst line\n\nkey=not a key\nEOF\nafter=2\n"
    assert parse_output_file(text) == {
        "before": "1",
        "notes": "first line\n\nkey=not a key",
        "after": "2",
    }


def test_an_empty_heredoc_is_an_empty_value() -> None:
    assert parse_output_file("x<<END\nEND") == {"x": ""}


def test_equals_before_the_heredoc_marker_makes_a_plain_value() -> None:
    assert parse_output_file("cmd=cat <<EOF") == {"cmd": "cat <<EOF"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=1\nb=2\noops\n", "WAYANG_OUTPUT line 3: expected key=value, got 'oops'"),
        ("two words=x", "WAYANG_OUTPUT line 1: invalid output name 'two words'"),
        ("=x", "WAYANG_OUTPUT line 1: invalid output name ''"),
        ("9lives=x", "WAYANG_OUTPUT line 1: invalid output name '9lives'"),
        ("ok=1\nnotes<<EOF\nnever closed\n", "WAYANG_OUTPUT line 2: 'notes<<EOF' is never closed"),
        ("notes<<\nx\n", "WAYANG_OUTPUT line 1: a heredoc needs a delimiter"),
        ('{"a": 1', "WAYANG_OUTPUT is not valid JSON"),
        ('{"a b": 1}', "WAYANG_OUTPUT: invalid output name 'a b'"),
    ],
)
def test_malformed_files_name_the_line_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(OutputFileError) as caught:
        parse_output_file(text)
    assert str(caught.value).startswith(message)


def test_names_may_use_dashes_and_underscores() -> None:
    assert parse_output_file("_a-b_9=x") == {"_a-b_9": "x"}
