"""Integration-test helpers: a generic gRPC server through services.common.create_server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def bearer():
    """``bearer(key)`` → call metadata carrying the key."""

    def make(key: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key}"),)

    return make


# --- one local Ray head (2 CPUs) for every integration test that needs Ray ---------------
# A process attaches to one Ray cluster only, so the services under test and this process
# must all use the same head.


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A loopback Ray head with 2 CPUs: yields its address ``"127.0.0.1:PORT"`` (and sets
    the env a later ``ray.init(address=…)`` in this process needs)."""
    from tests.ray_head import start_ray_head

    address, stop = start_ray_head(2)
    try:
        yield address
    finally:
        stop()


@pytest.fixture(scope="module", autouse=True)
def ray_left_idle(request) -> Iterator[None]:
    """After a module whose tests use Ray: the cluster must be idle again. Runs or
    placement groups a module leaves behind would hold the CPUs the next module's runs
    wait for, for ever; they are released, and the module's teardown fails naming them."""
    yield
    uses_ray = any(
        item.module is request.module and "ray_cluster" in item.fixturenames for item in request.session.items
    )
    if not uses_ray:
        return
    from tests.ray_head import release_leftovers

    leaks = release_leftovers(request.getfixturevalue("ray_cluster"))
    assert not leaks, f"{request.module.__name__} left Ray resources held: {leaks}"


@pytest.fixture(scope="session")
def ray_client(ray_cluster: str) -> Iterator[str]:
    """This test process attached to ``ray_cluster`` (unless a scheduler under test already is)."""
    import ray

    attached = not ray.is_initialized()
    if attached:
        ray.init(address=ray_cluster, include_dashboard=False, log_to_driver=False)
    try:
        yield ray_cluster
    finally:
        if attached and ray.is_initialized():
            ray.shutdown()
