"""``mtw.Client`` and ``mtw.AsyncClient``: one object per caller, one resource per service.

Each service's channel opens on first use. Later services slot in as another resource
property next to ``datasets`` (``tuning_jobs`` on "training", ``evaluations`` on
"evaluation", ``models`` on "registry"), sharing the transport, auth and retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Self

import grpc

from mtw.client.config import DEFAULT_RETRIES, DEFAULT_TIMEOUT, ClientConfig
from mtw.client.datasets import AsyncDatasetsResource, DatasetsResource
from mtw.client.evaluations import AsyncEvaluationsResource, EvaluationsResource
from mtw.client.insights import InsightsResource
from mtw.client.jobs import AsyncJobsResource, JobsResource
from mtw.client.models import AsyncModelsResource, ModelsResource
from mtw.client.transport import AsyncTransport, SyncTransport


class Client:
    """Synchronous MTW client.

    ``endpoint``: ``host:port`` for every service, a bare host (each service on its
    default port), or a mapping ``{"dataset": "host:port", …}``; unset, it comes from
    ``MTW_<SERVICE>_ENDPOINT`` / ``MTW_ENDPOINT`` (default 127.0.0.1, dataset on 50051).
    ``api_key`` defaults to ``MTW_API_KEY``, ``project`` to ``MTW_PROJECT`` or "dev".
    ``timeout`` is the default per-call deadline in seconds (uploads have none);
    ``retries`` how often an idempotent call is retried on UNAVAILABLE.
    """

    def __init__(
        self,
        endpoint: str | Mapping[str, str] | None = None,
        api_key: str | None = None,
        *,
        project: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        credentials: grpc.ChannelCredentials | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self.config = config or ClientConfig.resolve(
            endpoint, api_key, project=project, timeout=timeout, retries=retries
        )
        self._transport = SyncTransport(self.config, credentials)

    @property
    def project(self) -> str:
        return self.config.project

    @cached_property
    def datasets(self) -> DatasetsResource:
        """Datasets and their versions (dataset service)."""
        return DatasetsResource(self._transport, self.config.project)

    @cached_property
    def jobs(self) -> JobsResource:
        """Base models, estimates and tuning jobs (training service)."""
        return JobsResource(self._transport, self.config.project)

    @cached_property
    def evaluations(self) -> EvaluationsResource:
        """Evaluations, their example results and recommendations (evaluation service)."""
        return EvaluationsResource(self._transport, self.config.project)

    @cached_property
    def insights(self) -> InsightsResource:
        """Satisfaction survey, funnel, experiment variants; rollout and report for admins."""
        return InsightsResource(self._transport, self.config.project)

    @cached_property
    def models(self) -> ModelsResource:
        """Registered models, versions, aliases and predictions (registry service)."""
        return ModelsResource(self._transport, self.config.project)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"mtw.Client(project={self.project!r}, endpoints={dict(self.config.endpoints)!r})"


class AsyncClient:
    """grpc.aio MTW client; same arguments as :class:`Client`. Use ``async with``
    (or ``await client.close()``) and create it inside the event loop it runs on."""

    def __init__(
        self,
        endpoint: str | Mapping[str, str] | None = None,
        api_key: str | None = None,
        *,
        project: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        credentials: grpc.ChannelCredentials | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self.config = config or ClientConfig.resolve(
            endpoint, api_key, project=project, timeout=timeout, retries=retries
        )
        self._transport = AsyncTransport(self.config, credentials)

    @property
    def project(self) -> str:
        return self.config.project

    @cached_property
    def datasets(self) -> AsyncDatasetsResource:
        return AsyncDatasetsResource(self._transport, self.config.project)

    @cached_property
    def models(self) -> AsyncModelsResource:
        return AsyncModelsResource(self._transport, self.config.project)

    @cached_property
    def evaluations(self) -> AsyncEvaluationsResource:
        return AsyncEvaluationsResource(self._transport, self.config.project)

    @cached_property
    def jobs(self) -> AsyncJobsResource:
        """Base models, estimates and tuning jobs (training service)."""
        return AsyncJobsResource(self._transport, self.config.project)

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"mtw.AsyncClient(project={self.project!r}, endpoints={dict(self.config.endpoints)!r})"
        )
