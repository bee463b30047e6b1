"""A property-based run of the gateway's own OpenAPI document against the live gateway
in front of all five services: schemathesis makes requests from every operation's
schema, valid and invalid ones, and none may be answered with a 5xx. Path parameters
name the caller's own project half of the time, so requests reach its resources and
not only the tenancy check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from gateway import server as gateway_server
from gateway.settings import GatewaySettings
from services.eval_svc import service as eval_service
from services.eval_svc.settings import EvaluationSettings
from services.insights_svc import service as insights_service
from services.insights_svc.settings import InsightsSettings
from services.registry_svc import service as registry_service
from services.registry_svc.settings import RegistrySettings
from services.training_svc.scheduler import InMemoryScheduler
from tests.integration.training.service_harness import start_stack, stop_stack

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 25
TOKEN = "internal-token-for-the-fuzz-run"


@dataclass
class System:
    url: str
    key: str  # project alpha's


@pytest_asyncio.fixture(scope="module")
async def system(service_settings, ray_cluster) -> AsyncIterator[System]:
    """The gateway in front of all five services, which trust each other's internal token."""
    stack = await start_stack(service_settings, InMemoryScheduler(), internal_token=TOKEN)
    dataset, training = f"127.0.0.1:{stack.dataset.port}", f"127.0.0.1:{stack.training.port}"
    bucket = stack.settings.s3_bucket
    evaluations = await eval_service.start(service_settings(
        EvaluationSettings, s3_bucket=bucket, service_name="evaluation-svc", dataset_service_endpoint=dataset,
        training_service_endpoint=training, ray_address=ray_cluster, internal_token=TOKEN))
    registry = await registry_service.start(service_settings(
        RegistrySettings, s3_bucket=bucket, service_name="registry-svc", dataset_service_endpoint=dataset,
        training_service_endpoint=training, evaluation_service_endpoint=f"127.0.0.1:{evaluations.port}",
        internal_token=TOKEN))
    insights = await insights_service.start(service_settings(
        InsightsSettings, service_name="insights-svc", internal_token=TOKEN, dataset_service_endpoint=dataset,
        training_service_endpoint=training, registry_service_endpoint=f"127.0.0.1:{registry.port}"))
    running = await gateway_server.start(GatewaySettings(http_port=0), {
        "dataset": dataset, "training": training, "evaluation": f"127.0.0.1:{evaluations.port}",
        "registry": f"127.0.0.1:{registry.port}", "insights": f"127.0.0.1:{insights.port}"})
    try:
        yield System(running.url, stack.keys["alpha"])
    finally:
        await running.stop()
        for service in (insights, registry, evaluations):
            await service.stop()
        await stop_stack(stack)


async def test_no_request_the_openapi_document_allows_gets_a_server_error(system):
    failures = await asyncio.to_thread(_fuzz, system.url, system.key)
    assert not failures, "\n".join(failures)


def _fuzz(url: str, key: str) -> list[str]:
    """Every operation, positive and negative cases; returns one line per operation that
    answered a 5xx (with the request that did it)."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 60, "the document lists every service's operations"
    session = requests.Session()
    session.headers["authorization"] = f"Bearer {key}"
    failures = []
    statuses: dict[int, int] = {}
    for operation in operations:
        own = {"project": "alpha"} if "{project}" in operation.path else {}
        cases = st.one_of(*(operation.as_strategy(generation_mode=mode, path_parameters=pinned)
                            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                            for pinned in (own, {})))

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def check(case) -> None:
            response = case.call_and_validate(base_url=url, session=session, checks=[not_a_server_error],
                                              timeout=30)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported per operation; the run goes on
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:2000]}")
    print(f"{len(operations)} operations, answers by status: {dict(sorted(statuses.items()))}")
    assert statuses.get(200), "some requests get through to the services"
    return failures
