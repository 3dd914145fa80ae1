"""Where the server of a store listens on this machine, and its API token: what the CLI needs to
find a server (or a worker to reach one), without importing the server itself."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from wayang.errors import UsageError

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


def read_token(token: str | None, token_file: Path | None) -> str | None:
    """The API token: given, else from the file, else ``$WAYANG_API_TOKEN``; None if none."""
    if token:
        return token
    if token_file is not None:
        try:
            text = token_file.read_text("utf-8").strip()
        except OSError as exc:
            raise UsageError(
                f"--token-file {token_file}: cannot read it ({exc.strerror})"
            ) from None
        if not text:
            raise UsageError(f"--token-file {token_file}: the file is empty")
        return text
    return os.environ.get(TOKEN_VARIABLE) or None
