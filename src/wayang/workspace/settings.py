"""``[workspaces]`` in ``wayang.toml``: where workspaces live, how they are made and kept.

::

    [workspaces]
    mode = "per-run"            # "per-run": each run in its own workspace; "off": in place
    root = "~/wayang-ws"        # default $WAYANG_WORKSPACES, else $XDG_DATA_HOME/wayang/workspaces
    backend = "auto"            # "auto" (.jj/ → jj, else git), "git" or "jj"
    direnv = "auto"             # "allow", "deny" or "auto"
    uncommitted = false         # include the checkout's uncommitted changes (git)
    tools = ["agents.just", "scripts", "rules"]

    [workspaces.retention]
    keep_failed = "7d"          # failed workspaces are kept this long
    keep_last = 20              # at most this many finished workspaces per repository
    max_disk = "10GB"           # and at most this much disk for them
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from wayang.model.durations import parse_duration

DirenvPolicy = Literal["allow", "deny", "auto"]
BackendChoice = Literal["auto", "git", "jj"]
ROOT_VARIABLE = "WAYANG_WORKSPACES"
MODE_VARIABLE = "WAYANG_WORKSPACE_MODE"
DEFAULT_TOOLS = ("agents.just", "scripts", "rules")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_size(value: object) -> int | None:
    """``"10GB"``, ``"500MiB"``, ``1024`` → bytes (None: no limit)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise PydanticCustomError(
            "size",
            "a size is a number of bytes or like '500MB' or '10GB' (got {value})",
            {"value": value},
        )
    unit = (match.group(2) or "").upper()
    base = 1024 if "I" in unit else 1000
    power = " KMGT".index(unit[0]) if unit and unit[0] in "KMGT" else 0
    return int(float(match.group(1)) * base**power)


def _duration(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise PydanticCustomError(
        "duration", "a duration is like '7d' or '12h' (got {value})", {"value": value}
    )


class RetentionSettings(BaseModel):
    """``[workspaces.retention]``: what ``wayang workspace clean`` and a server remove."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_failed: Annotated[float, BeforeValidator(_duration)] = 7 * 86400.0
    keep_last: int = Field(default=20, ge=0)
    max_disk: Annotated[int | None, BeforeValidator(parse_size)] = None


class WorkspaceSettings(BaseModel):
    """``[workspaces]``: see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["per-run", "off"] = "per-run"
    root: str = ""
    backend: BackendChoice = "auto"
    direnv: DirenvPolicy = "auto"
    uncommitted: bool = False
    tools: tuple[str, ...] = DEFAULT_TOOLS
    retention: RetentionSettings = RetentionSettings()


def workspaces_root(settings: WorkspaceSettings, environ: Mapping[str, str]) -> Path:
    """``$WAYANG_WORKSPACES``, else ``root`` from ``wayang.toml``, else the XDG data folder."""
    chosen = environ.get(ROOT_VARIABLE) or settings.root
    if chosen:
        return Path(os.path.expanduser(chosen)).resolve()
    data = environ.get("XDG_DATA_HOME") or os.path.join(environ.get("HOME", "~"), ".local/share")
    return Path(os.path.expanduser(data), "wayang", "workspaces").resolve()


def workspace_mode(settings: WorkspaceSettings, environ: Mapping[str, str]) -> str:
    """``$WAYANG_WORKSPACE_MODE`` (per-run or off) overrides ``mode``."""
    chosen = environ.get(MODE_VARIABLE, "").strip()
    return chosen if chosen in ("per-run", "off") else settings.mode
