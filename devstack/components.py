"""The unit devstack starts and stops: a Component mutates a shared env as it starts."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parent.parent
# Keys, logs and the embedded database; MTW_RUN_DIR moves them (e.g. a test's tmp dir).
RUN_DIR = Path(os.environ.get("MTW_RUN_DIR") or ROOT / ".run").resolve()


class Component(Protocol):
    """Something devstack brings up, in list order, and tears down in reverse."""

    name: str

    async def start(self, env: dict[str, str]) -> None:
        """Start (or adopt) the part; publish how to reach it by adding to ``env``."""

    async def stop(self) -> None:
        """Stop whatever start() launched (never what it merely adopted)."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_or_free(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` when nothing listens there, else some free port."""
    return preferred if port_free(preferred, host) else free_port(host)


def say(message: str) -> None:
    """devstack's own lines, distinct from the services' JSON logs."""
    print(f"[devstack] {message}", flush=True)
