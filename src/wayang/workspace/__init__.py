"""Isolated per-run workspaces: git worktrees and Jujutsu workspaces outside the repository.

:class:`WorkspaceManager` is the port's one user-facing class (the seed's ``workspace-manager``);
the backends (:mod:`.git`, :mod:`.jujutsu`) fill :class:`~.backend.Backend`; tool bundles,
direnv, metadata, retention and artifacts each have their own module.
"""
