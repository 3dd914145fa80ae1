"""What goes wrong with workspaces, each saying what to do next."""

from __future__ import annotations

from wayang.errors import UsageError, WayangError


class WorkspaceError(WayangError):
    """A workspace could not be made, found, read or removed."""


class WorkspaceNotFoundError(WorkspaceError):
    """No workspace has that id under this repository's namespace."""

    exit_code = 2


class InvalidWorkspaceIdError(UsageError):
    """A workspace id that could name a path outside the workspace root."""


class BackendCommandError(WorkspaceError):
    """``git`` or ``jj`` failed; the message carries the command and what it printed."""


class InvalidArtifactPathError(UsageError):
    """An artifact glob, artifact name or run id that could name a path outside its folder."""
