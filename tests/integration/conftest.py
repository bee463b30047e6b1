"""Integration-test helpers: a generic gRPC server through services.common.create_server."""

from __future__ import annotations

import pytest


@pytest.fixture
def bearer():
    """``bearer(key)`` → call metadata carrying the key."""

    def make(key: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key}"),)

    return make
