"""Who drives a run: an owner id per engine process, and telling whether an owner is gone."""

from __future__ import annotations

import os
import secrets
import socket


def new_owner_id() -> str:
    """``host:pid:random``; the random part keeps two engines of one process apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def owner_is_gone(owner: str | None) -> bool:
    """True when ``owner`` is an engine of this host whose process no longer exists.

    Only a local owner can be known dead; one on another host is waited out (its lease).
    """
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped still answers kill(pid, 0); its state says it is dead."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False
