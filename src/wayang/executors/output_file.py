"""Parsing the file a shell step writes its outputs to (the path in ``$WAYANG_OUTPUT``).

Two forms are accepted, chosen by the first character:

* one JSON object — the whole file, after stripping, starts with ``{``; values keep their types;
* ``key=value`` lines — the value is everything after the first ``=``, verbatim; blank lines and
  lines starting with ``#`` are skipped; a multi-line value is written GitHub-Actions style::

      notes<<EOF
      first line
      second line
      EOF

A later line for the same key wins, so appending (``>>``) twice updates a value.
"""

from __future__ import annotations

import json
import re
from typing import Any

from wayang.errors import WayangError

OUTPUT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_HEREDOC = "<<"


class OutputFileError(WayangError):
    """The output file is malformed; the message names the line and what was expected."""


def parse_output_file(text: str) -> dict[str, Any]:
    """The outputs written to a ``$WAYANG_OUTPUT`` file; raises :class:`OutputFileError`."""
    if text.strip().startswith("{"):
        return _parse_json(text)
    return _parse_lines(text.split("\n"))


def _parse_json(text: str) -> dict[str, Any]:
    try:
        value: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputFileError(f"WAYANG_OUTPUT is not valid JSON: {exc}") from None
    # Text that starts with "{" and decodes is always an object, so no type check is needed.
    for key in value:
        _check_key(key, "WAYANG_OUTPUT")
    return value


def _parse_lines(lines: list[str]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        where = f"WAYANG_OUTPUT line {index + 1}"
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        equals, heredoc = line.find("="), line.find(_HEREDOC)
        if heredoc >= 0 and (equals < 0 or heredoc < equals):
            key, delimiter = line[:heredoc], line[heredoc + len(_HEREDOC) :]
            value, index = _read_heredoc(lines, index, delimiter, where, line)
        elif equals >= 0:
            key, value = line[:equals], line[equals + 1 :]
        else:
            raise OutputFileError(f"{where}: expected key=value, got {line!r}")
        _check_key(key, where)
        outputs[key] = value
    return outputs


def _read_heredoc(
    lines: list[str], start: int, delimiter: str, where: str, line: str
) -> tuple[str, int]:
    """The value between ``start`` and the delimiter line, and the index just past that line."""
    if not delimiter.strip():
        raise OutputFileError(f"{where}: a heredoc needs a delimiter after '<<', got {line!r}")
    for end in range(start, len(lines)):
        if lines[end] == delimiter:
            return "\n".join(lines[start:end]), end + 1
    raise OutputFileError(f"{where}: {line!r} is never closed by a line {delimiter!r}")


def _check_key(key: str, where: str) -> None:
    if not OUTPUT_KEY.fullmatch(key):
        raise OutputFileError(
            f"{where}: invalid output name {key!r} "
            "(use a letter or '_' first, then letters, digits, '_' or '-')"
        )
