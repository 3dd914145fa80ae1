"""Durations as users write them: ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h30m"``, ``"7d"``, ``"2w"``.

A bare number is seconds. Parsed into float seconds, because that is what every consumer (timeouts,
retry delays, retention) computes with.
"""

from __future__ import annotations

import re

UNIT_SECONDS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h|d|w))+\s*$"
# Ten years: anything longer is a typo, and it keeps arithmetic on deadlines far from overflow.
MAX_SECONDS = 10 * 365 * 86400.0


def parse_duration(text: str) -> float:
    """Parse ``text`` into seconds, or raise ``ValueError`` with a message that shows the form."""
    compact = text.strip()
    position = 0
    total = 0.0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        total += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not compact or position != len(compact):
        raise ValueError(
            f"invalid duration {text!r}: write a number with a unit, such as "
            "'500ms', '30s', '5m', '1h30m', '7d' or '2w'"
        )
    return check_duration(total)


def check_duration(seconds: float) -> float:
    """Reject negative or absurdly long durations."""
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_SECONDS:
        raise ValueError("a duration cannot exceed 10 years")
    return float(seconds)


def format_duration(seconds: float) -> str:
    """The shortest readable form of ``seconds`` (``90`` → ``"1m30s"``), for plans and tables."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    remaining = round(seconds)
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(UNIT_SECONDS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
