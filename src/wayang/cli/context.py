"""What every CLI command gets: where to print, and whether colour is wanted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliContext:
    """Consoles for results (stdout) and problems (stderr); colour only on a terminal."""

    out: Console
    err: Console

    @classmethod
    def create(cls, color: bool | None = None) -> CliContext:
        # rich detects terminals and honours NO_COLOR; `color` lets --no-color force it off.
        force = True if color else None  # --color forces a terminal; --no-color only drops colour
        no_color = None if color is None else not color
        return cls(
            out=Console(highlight=False, no_color=no_color, force_terminal=force, soft_wrap=True),
            err=Console(
                stderr=True,
                highlight=False,
                no_color=no_color,
                force_terminal=force,
                soft_wrap=True,
            ),
        )

    def recolor(self, color: bool) -> None:
        """Force colour on or off (``--color`` / ``--no-color``)."""
        replacement = CliContext.create(color)
        self.out, self.err = replacement.out, replacement.err


def pass_cli(function: F) -> F:
    """Hand the command the :class:`CliContext` built by the root group."""
    return click.make_pass_decorator(CliContext, ensure=True)(function)  # type: ignore[return-value]
