"""``wayang server`` as a process: the core, the HTTP API on a TCP port and on a Unix socket,
and a clean stop on SIGTERM or Ctrl-C.

The Unix socket is how the CLI on the same machine finds the server of a store without any
configuration: its path is derived from the store's location (:func:`socket_path`). Binding the
TCP port to anything but loopback needs an API token; the server refuses to start open on a
public interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from wayang.errors import UsageError
from wayang.server.api import create_api
from wayang.server.core import SERVERS, ServerCore
from wayang.server.locate import TOKEN_VARIABLE, read_token, socket_path

log = logging.getLogger("wayang.server")


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8080
    socket: str | None = None  # None: the default for the store; "": no socket
    token: str | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(listen: Listen) -> None:
    if not is_loopback(listen.host) and not listen.token:
        raise UsageError(
            f"--host {listen.host} is not a loopback address: the API would be open to the "
            f"network. Set {TOKEN_VARIABLE} (or --token-file FILE) so requests need a token, or "
            "bind to 127.0.0.1"
        )


async def serve(core: ServerCore, listen: Listen, store_location: str) -> None:
    """Run until SIGTERM/SIGINT: core first, then HTTP; on a signal HTTP stops, then the core."""
    check_exposure(listen)
    async with core:
        api = create_api(core, token=listen.token)
        group = _Group()
        servers = [group.server(_config(api, host=listen.host, port=listen.port))]
        path = socket_path(store_location) if listen.socket is None else Path(listen.socket)
        if listen.socket != "":
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            servers.append(group.server(_config(api, uds=str(path))))
        url = f"http://{listen.host}:{listen.port}"
        where = {"url": url, "socket": str(path) if listen.socket != "" else "", "pid": os.getpid()}
        core.store.kv_set(SERVERS, core.engine.owner if core.engine else "server", where)
        socket_text = str(path) if listen.socket != "" else "none"
        log.info("wayang server on %s (socket %s), store %s", url, socket_text, store_location)
        try:
            await asyncio.gather(*(s.serve() for s in servers))
        finally:
            group.stop()
            with contextlib.suppress(Exception):
                core.store.kv_delete(SERVERS, core.engine.owner if core.engine else "server")
            if listen.socket != "":
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            log.info("stopping: finishing busy runs (grace %gs)", core.settings.grace_s)


def _config(api: Any, **where: Any) -> uvicorn.Config:
    return uvicorn.Config(api, log_level="warning", lifespan="off", access_log=False, **where)


class _Group:
    """The HTTP servers of one process: a SIGTERM or Ctrl-C stops them all (and only them), so
    the process finishes its own shutdown and exits 0."""

    def __init__(self) -> None:
        self.servers: list[uvicorn.Server] = []

    def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True

    def server(self, config: uvicorn.Config) -> uvicorn.Server:
        group = self

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                loop = asyncio.get_running_loop()
                stops = (signal.SIGINT, signal.SIGTERM)
                for sig in stops:
                    loop.add_signal_handler(sig, group.stop)
                try:
                    yield
                finally:
                    for sig in stops:
                        with contextlib.suppress(Exception):
                            loop.remove_signal_handler(sig)

        server = Server(config)
        self.servers.append(server)
        return server


__all__ = ["Listen", "check_exposure", "is_loopback", "read_token", "serve", "socket_path"]
