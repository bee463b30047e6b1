"""Polling for a condition that a service reaches in the background."""

from __future__ import annotations

import asyncio


async def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    """Polls ``predicate()`` (async) until it returns something truthy, and returns that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
