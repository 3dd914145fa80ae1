"""Where the server of a store listens on this machine, and the name of its token variable:
what the CLI needs to find a server, without importing the server itself."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

TOKEN_VARIABLE = "WAYANG_API_TOKEN"


def socket_path(store_location: str) -> Path:
    """The Unix socket of the server of ``store_location``: the same for every spelling of one
    store file (``./w.db``, ``/abs/w.db``), and short enough for the 108-byte limit of socket
    paths whatever the store's path."""
    key = store_location
    if "://" not in store_location:
        key = str(Path(store_location).expanduser().resolve())
    runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(runtime) / f"wayang-{os.getuid()}" / f"server-{digest}.sock"
