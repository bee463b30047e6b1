"""Fixtures the dashboard tests share: the whole system as ``make run`` starts it
(``python -m devstack``) on this session's database, and a folder for screenshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.components import free_port

from .test_wizard_step1 import Devstack

# A fresh database: the first estimate measures throughput on Ray, bounded here so a busy
# machine gives an estimate without a duration rather than a long wait.
CALIBRATION_TIMEOUT_SECONDS = 20


@pytest.fixture(scope="module")
def system(request: pytest.FixtureRequest, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Devstack, str]]:
    """The running system and the dashboard's URL; a test module's ``DEVSTACK_ENV``
    (a dict) is added to the environment it starts in."""
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GATEWAY_PORT", str(port))  # devstack reads it for the gateway
        mp.setenv("CALIBRATION_TIMEOUT_SECONDS", str(CALIBRATION_TIMEOUT_SECONDS))
        for name, value in getattr(request.module, "DEVSTACK_ENV", {}).items():
            mp.setenv(name, value)
        stack = Devstack(tmp_path_factory.mktemp("dashboard-run"), database_url)
    try:
        stack.wait_up()
        assert f"Dashboard: http://127.0.0.1:{port}" in stack.output()
        yield stack, f"http://127.0.0.1:{port}"
    finally:
        assert stack.stop() == 0, stack.output()[-3000:]


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``MTW_ARTEFACTS``, else a pytest tmp dir."""
    folder = Path(os.environ.get("MTW_ARTEFACTS") or tmp_path_factory.mktemp("dashboard-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
