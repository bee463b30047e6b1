"""``client.evaluations``: wizard step 3 — measure a model, read its mistakes, compare,
and fine-tune again from a recommendation.

Methods return the service's protobuf messages (``Evaluation``, ``ExampleResult``,
``Recommendation``, ``TuningJob``, ``CompareEvaluationsResponse``). An evaluation may be
given by id (expanded with the client's project), by full name, or as a returned
``Evaluation``; a tuning job likewise; a dataset version as ``DATASET@N`` or a full name.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from mtw.client import names
from mtw.client.jobs import base_model_name, job_name
from mtw.client.models import version_name
from mtw.client.pagination import aiterate_pages, iterate_pages
from mtw.client.transport import USE_DEFAULT, AsyncTransport, SyncTransport, afollow, follow
from mtw.evaluation.v1 import (
    evaluation_event_pb2,
    evaluation_pb2,
    example_result_pb2,
    recommendation_pb2,
)
from mtw.evaluation.v1 import evaluation_service_pb2 as svc
from mtw.evaluation.v1.evaluation_service_pb2_grpc import EvaluationServiceStub
from mtw.training.v1 import tuning_job_pb2

SERVICE = "evaluation"

Evaluation = evaluation_pb2.Evaluation
EvaluationConfig = evaluation_pb2.EvaluationConfig
EvaluationEvent = evaluation_event_pb2.EvaluationEvent
ExampleResult = example_result_pb2.ExampleResult
Recommendation = recommendation_pb2.Recommendation
Comparison = svc.CompareEvaluationsResponse
TERMINAL = frozenset({4, 5, 7})  # SUCCEEDED, FAILED, CANCELLED


def evaluation_name(ref: Any, project: str) -> str:
    """``e`` → ``projects/{project}/evaluations/e``; full names pass through."""
    text = names._as_str(ref)
    return text if text.startswith("projects/") else f"projects/{project}/evaluations/{text}"


class _Requests:
    """Request messages, shared by the sync and async resources."""

    def __init__(self, project: str) -> None:
        self.project = project

    def name(self, ref: Any) -> str:
        return evaluation_name(ref, self.project)

    def create(self, *, tuning_job: Any, base_model: Any, model_version: Any, dataset_version: Any, split: str,
               metrics: Sequence[str], config: EvaluationConfig | dict | None, baseline: Any, display_name: str,
               evaluation_id: str, labels: dict[str, str] | None) -> svc.CreateEvaluationRequest:
        evaluation = Evaluation(split=split, metrics=list(metrics), display_name=display_name,
                                labels=dict(labels or {}))
        if tuning_job:
            evaluation.tuning_job = job_name(tuning_job, self.project)
        elif base_model:
            evaluation.base_model = base_model_name(base_model)
        elif model_version:
            evaluation.model_version = version_name(model_version, self.project)
        if dataset_version:
            evaluation.dataset_version = names.version_name(dataset_version, self.project)
        if config:
            evaluation.config.CopyFrom(config if isinstance(config, EvaluationConfig) else EvaluationConfig(**config))
        if baseline:
            evaluation.baseline_evaluation = self.name(baseline)
        return svc.CreateEvaluationRequest(parent=names.project_name(self.project), evaluation=evaluation,
                                           evaluation_id=evaluation_id, request_id=str(uuid.uuid4()))

    def list(self, filter: str, token: str) -> svc.ListEvaluationsRequest:
        return svc.ListEvaluationsRequest(parent=names.project_name(self.project), page_token=token, filter=filter)

    def examples(self, evaluation: Any, filter: str, order_by: str, token: str) -> svc.ListExampleResultsRequest:
        return svc.ListExampleResultsRequest(parent=self.name(evaluation), page_token=token, filter=filter,
                                             order_by=order_by)

    def recommendations(self, evaluation: Any, filter: str, token: str) -> svc.ListRecommendationsRequest:
        return svc.ListRecommendationsRequest(parent=self.name(evaluation), page_token=token, filter=filter)

    def apply(self, recommendation: Any, tuning_job_id: str, display_name: str,
              licence_acknowledged: bool) -> svc.ApplyRecommendationRequest:
        return svc.ApplyRecommendationRequest(name=names._as_str(recommendation), tuning_job_id=tuning_job_id,
                                              display_name=display_name, licence_acknowledged=licence_acknowledged,
                                              request_id=str(uuid.uuid4()))

    def compare(self, evaluations: Sequence[Any], filter: str, page_size: int) -> svc.CompareEvaluationsRequest:
        return svc.CompareEvaluationsRequest(evaluations=[self.name(e) for e in evaluations], filter=filter,
                                             page_size=page_size)

    def watch(self, evaluation: Any) -> Any:
        name = self.name(evaluation)
        return lambda last: svc.WatchEvaluationRequest(name=name, after_sequence_number=last)


class EvaluationsResource:
    """Evaluations of the client's project (sync). Reached as ``client.evaluations``."""

    def __init__(self, transport: SyncTransport, project: str) -> None:
        self._t = transport
        self._r = _Requests(project)

    @property
    def _stub(self) -> EvaluationServiceStub:
        return self._t.stub(SERVICE, EvaluationServiceStub)

    def create(self, *, tuning_job: Any = None, base_model: Any = None, model_version: Any = None,
               dataset_version: Any = None, split: str = "", metrics: Sequence[str] = (),
               config: EvaluationConfig | dict | None = None, baseline: Any = None, display_name: str = "",
               evaluation_id: str = "", labels: dict[str, str] | None = None,
               timeout: Any = USE_DEFAULT) -> Evaluation:
        """Queue an evaluation of a tuning job's model (the job's data by default, with its
        base model alongside), a registered model version (``genres@production``) or a base
        model. Retried safely."""
        req = self._r.create(tuning_job=tuning_job, base_model=base_model, model_version=model_version,
                             dataset_version=dataset_version, split=split, metrics=metrics, config=config,
                             baseline=baseline, display_name=display_name, evaluation_id=evaluation_id,
                             labels=labels)
        return self._t.call(self._stub.CreateEvaluation, req, idempotent=True, timeout=timeout)

    def get(self, evaluation: Any, *, timeout: Any = USE_DEFAULT) -> Evaluation:
        return self._t.call(self._stub.GetEvaluation, svc.GetEvaluationRequest(name=self._r.name(evaluation)),
                            idempotent=True, timeout=timeout)

    def list(self, *, filter: str = "", limit: int | None = None, timeout: Any = USE_DEFAULT) -> Iterator[Evaluation]:
        """Newest first; ``filter`` e.g. ``tuning_job="projects/p/tuningJobs/j"``."""
        return iterate_pages(lambda token: self._t.call(self._stub.ListEvaluations, self._r.list(filter, token),
                                                        idempotent=True, timeout=timeout),
                             "evaluations", limit=limit)

    def cancel(self, evaluation: Any, *, timeout: Any = USE_DEFAULT) -> Evaluation:
        return self._t.call(self._stub.CancelEvaluation, svc.CancelEvaluationRequest(name=self._r.name(evaluation)),
                            idempotent=True, timeout=timeout)

    def delete(self, evaluation: Any, *, timeout: Any = USE_DEFAULT) -> None:
        self._t.call(self._stub.DeleteEvaluation, svc.DeleteEvaluationRequest(name=self._r.name(evaluation)),
                     idempotent=True, timeout=timeout)

    def examples(self, evaluation: Any, *, filter: str = "", order_by: str = "", limit: int | None = None,
                 timeout: Any = USE_DEFAULT) -> Iterator[ExampleResult]:
        """Per-example results, worst first; ``filter`` e.g. ``reference="a" AND prediction="b"``."""
        return iterate_pages(lambda token: self._t.call(
            self._stub.ListExampleResults, self._r.examples(evaluation, filter, order_by, token), idempotent=True,
            timeout=timeout), "example_results", limit=limit)

    def recommendations(self, evaluation: Any, *, filter: str = "",
                        timeout: Any = USE_DEFAULT) -> Iterator[Recommendation]:
        return iterate_pages(lambda token: self._t.call(
            self._stub.ListRecommendations, self._r.recommendations(evaluation, filter, token), idempotent=True,
            timeout=timeout), "recommendations")

    def apply(self, recommendation: Any, *, tuning_job_id: str = "", display_name: str = "",
              licence_acknowledged: bool = False, timeout: Any = USE_DEFAULT) -> tuning_job_pb2.TuningJob:
        """Fine-tune again: a new tuning job with the recommendation's changes and lineage."""
        req = self._r.apply(recommendation, tuning_job_id, display_name, licence_acknowledged)
        return self._t.call(self._stub.ApplyRecommendation, req, idempotent=True, timeout=timeout)

    def compare(self, evaluations: Sequence[Any], *, filter: str = "", page_size: int = 0,
                timeout: Any = USE_DEFAULT) -> Comparison:
        """Metric deltas against the first evaluation and the examples whose outcome changed."""
        return self._t.call(self._stub.CompareEvaluations, self._r.compare(evaluations, filter, page_size),
                            idempotent=True, timeout=timeout)

    def watch(self, evaluation: Any, *, after: int = 0, reconnect: bool = True) -> Iterator[EvaluationEvent]:
        """Events from ``after`` on, live, until the evaluation ends (re-opened after a drop)."""
        request = self._r.watch(evaluation)
        yield from follow(lambda last: self._stub.WatchEvaluation(request(last)), after, reconnect)


class AsyncEvaluationsResource:
    """The grpc.aio twin of :class:`EvaluationsResource` (``AsyncClient.evaluations``)."""

    def __init__(self, transport: AsyncTransport, project: str) -> None:
        self._t = transport
        self._r = _Requests(project)

    @property
    def _stub(self) -> EvaluationServiceStub:
        return self._t.stub(SERVICE, EvaluationServiceStub)

    async def create(self, *, tuning_job: Any = None, base_model: Any = None, model_version: Any = None,
                     dataset_version: Any = None, split: str = "", metrics: Sequence[str] = (),
                     config: EvaluationConfig | dict | None = None, baseline: Any = None, display_name: str = "",
                     evaluation_id: str = "", labels: dict[str, str] | None = None,
                     timeout: Any = USE_DEFAULT) -> Evaluation:
        req = self._r.create(tuning_job=tuning_job, base_model=base_model, model_version=model_version,
                             dataset_version=dataset_version, split=split, metrics=metrics, config=config,
                             baseline=baseline, display_name=display_name, evaluation_id=evaluation_id,
                             labels=labels)
        return await self._t.call(self._stub.CreateEvaluation, req, idempotent=True, timeout=timeout)

    async def get(self, evaluation: Any, *, timeout: Any = USE_DEFAULT) -> Evaluation:
        return await self._t.call(self._stub.GetEvaluation, svc.GetEvaluationRequest(name=self._r.name(evaluation)),
                                  idempotent=True, timeout=timeout)

    def list(self, *, filter: str = "", limit: int | None = None,
             timeout: Any = USE_DEFAULT) -> AsyncIterator[Evaluation]:
        async def fetch(token: str) -> svc.ListEvaluationsResponse:
            return await self._t.call(self._stub.ListEvaluations, self._r.list(filter, token), idempotent=True,
                                      timeout=timeout)

        return aiterate_pages(fetch, "evaluations", limit=limit)

    async def cancel(self, evaluation: Any, *, timeout: Any = USE_DEFAULT) -> Evaluation:
        return await self._t.call(self._stub.CancelEvaluation,
                                  svc.CancelEvaluationRequest(name=self._r.name(evaluation)), idempotent=True,
                                  timeout=timeout)

    async def delete(self, evaluation: Any, *, timeout: Any = USE_DEFAULT) -> None:
        await self._t.call(self._stub.DeleteEvaluation, svc.DeleteEvaluationRequest(name=self._r.name(evaluation)),
                           idempotent=True, timeout=timeout)

    def examples(self, evaluation: Any, *, filter: str = "", order_by: str = "", limit: int | None = None,
                 timeout: Any = USE_DEFAULT) -> AsyncIterator[ExampleResult]:
        async def fetch(token: str) -> svc.ListExampleResultsResponse:
            return await self._t.call(self._stub.ListExampleResults,
                                      self._r.examples(evaluation, filter, order_by, token), idempotent=True,
                                      timeout=timeout)

        return aiterate_pages(fetch, "example_results", limit=limit)

    def recommendations(self, evaluation: Any, *, filter: str = "",
                        timeout: Any = USE_DEFAULT) -> AsyncIterator[Recommendation]:
        async def fetch(token: str) -> svc.ListRecommendationsResponse:
            return await self._t.call(self._stub.ListRecommendations,
                                      self._r.recommendations(evaluation, filter, token), idempotent=True,
                                      timeout=timeout)

        return aiterate_pages(fetch, "recommendations")

    async def apply(self, recommendation: Any, *, tuning_job_id: str = "", display_name: str = "",
                    licence_acknowledged: bool = False, timeout: Any = USE_DEFAULT) -> tuning_job_pb2.TuningJob:
        req = self._r.apply(recommendation, tuning_job_id, display_name, licence_acknowledged)
        return await self._t.call(self._stub.ApplyRecommendation, req, idempotent=True, timeout=timeout)

    async def compare(self, evaluations: Sequence[Any], *, filter: str = "", page_size: int = 0,
                      timeout: Any = USE_DEFAULT) -> Comparison:
        return await self._t.call(self._stub.CompareEvaluations, self._r.compare(evaluations, filter, page_size),
                                  idempotent=True, timeout=timeout)

    async def watch(self, evaluation: Any, *, after: int = 0,
                    reconnect: bool = True) -> AsyncIterator[EvaluationEvent]:
        """``async for event in client.evaluations.watch(e)``: live until it ends."""
        request = self._r.watch(evaluation)
        events = afollow(lambda last: self._stub.WatchEvaluation(request(last)), after, reconnect)
        async with contextlib.aclosing(events):
            async for event in events:
                yield event
