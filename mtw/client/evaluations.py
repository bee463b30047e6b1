"""``client.evaluations``: wizard step 3 — measure a model, read its mistakes, compare,
and fine-tune again from a recommendation.

Methods return the service's protobuf messages (``Evaluation``, ``ExampleResult``,
``Recommendation``, ``TuningJob``, ``CompareEvaluationsResponse``). An evaluation may be
given by id (expanded with the client's project), by full name, or as a returned
``Evaluation``; a tuning job likewise; a dataset version as ``DATASET@N`` or a full name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from mtw.client import names
from mtw.client.jobs import base_model_name, job_name
from mtw.client.pagination import iterate_pages
from mtw.client.transport import USE_DEFAULT, SyncTransport, follow
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


class EvaluationsResource:
    """Evaluations of the client's project (sync). Reached as ``client.evaluations``."""

    def __init__(self, transport: SyncTransport, project: str) -> None:
        self._t = transport
        self._project = project

    @property
    def _stub(self) -> EvaluationServiceStub:
        return self._t.stub(SERVICE, EvaluationServiceStub)

    def _name(self, ref: Any) -> str:
        return evaluation_name(ref, self._project)

    def create(self, *, tuning_job: Any = None, base_model: Any = None, model_version: str = "",
               dataset_version: Any = None, split: str = "", metrics: Sequence[str] = (),
               config: EvaluationConfig | dict | None = None, baseline: Any = None, display_name: str = "",
               evaluation_id: str = "", labels: dict[str, str] | None = None,
               timeout: Any = USE_DEFAULT) -> Evaluation:
        """Queue an evaluation of a tuning job's model (the job's data by default, with its
        base model alongside), a base model or a model version. Retried safely."""
        evaluation = Evaluation(split=split, metrics=list(metrics), display_name=display_name,
                                labels=dict(labels or {}))
        if tuning_job:
            evaluation.tuning_job = job_name(tuning_job, self._project)
        elif base_model:
            evaluation.base_model = base_model_name(base_model)
        elif model_version:
            evaluation.model_version = model_version
        if dataset_version:
            evaluation.dataset_version = names.version_name(dataset_version, self._project)
        if config:
            evaluation.config.CopyFrom(config if isinstance(config, EvaluationConfig) else EvaluationConfig(**config))
        if baseline:
            evaluation.baseline_evaluation = self._name(baseline)
        req = svc.CreateEvaluationRequest(parent=names.project_name(self._project), evaluation=evaluation,
                                          evaluation_id=evaluation_id, request_id=str(uuid.uuid4()))
        return self._t.call(self._stub.CreateEvaluation, req, idempotent=True, timeout=timeout)

    def get(self, evaluation: Any, *, timeout: Any = USE_DEFAULT) -> Evaluation:
        return self._t.call(self._stub.GetEvaluation, svc.GetEvaluationRequest(name=self._name(evaluation)),
                            idempotent=True, timeout=timeout)

    def list(self, *, filter: str = "", limit: int | None = None, timeout: Any = USE_DEFAULT) -> Iterator[Evaluation]:
        """Newest first; ``filter`` e.g. ``tuning_job="projects/p/tuningJobs/j"``."""
        def fetch(token: str) -> svc.ListEvaluationsResponse:
            req = svc.ListEvaluationsRequest(parent=names.project_name(self._project), page_token=token,
                                             filter=filter)
            return self._t.call(self._stub.ListEvaluations, req, idempotent=True, timeout=timeout)

        return iterate_pages(fetch, "evaluations", limit=limit)

    def cancel(self, evaluation: Any, *, timeout: Any = USE_DEFAULT) -> Evaluation:
        return self._t.call(self._stub.CancelEvaluation, svc.CancelEvaluationRequest(name=self._name(evaluation)),
                            idempotent=True, timeout=timeout)

    def delete(self, evaluation: Any, *, timeout: Any = USE_DEFAULT) -> None:
        self._t.call(self._stub.DeleteEvaluation, svc.DeleteEvaluationRequest(name=self._name(evaluation)),
                     idempotent=True, timeout=timeout)

    def examples(self, evaluation: Any, *, filter: str = "", order_by: str = "", limit: int | None = None,
                 timeout: Any = USE_DEFAULT) -> Iterator[ExampleResult]:
        """Per-example results, worst first; ``filter`` e.g. ``reference="a" AND prediction="b"``."""
        parent = self._name(evaluation)

        def fetch(token: str) -> svc.ListExampleResultsResponse:
            req = svc.ListExampleResultsRequest(parent=parent, page_token=token, filter=filter, order_by=order_by)
            return self._t.call(self._stub.ListExampleResults, req, idempotent=True, timeout=timeout)

        return iterate_pages(fetch, "example_results", limit=limit)

    def recommendations(self, evaluation: Any, *, filter: str = "",
                        timeout: Any = USE_DEFAULT) -> Iterator[Recommendation]:
        parent = self._name(evaluation)

        def fetch(token: str) -> svc.ListRecommendationsResponse:
            req = svc.ListRecommendationsRequest(parent=parent, page_token=token, filter=filter)
            return self._t.call(self._stub.ListRecommendations, req, idempotent=True, timeout=timeout)

        return iterate_pages(fetch, "recommendations")

    def apply(self, recommendation: Any, *, tuning_job_id: str = "", display_name: str = "",
              licence_acknowledged: bool = False, timeout: Any = USE_DEFAULT) -> tuning_job_pb2.TuningJob:
        """Fine-tune again: a new tuning job with the recommendation's changes and lineage."""
        name = names._as_str(recommendation)
        req = svc.ApplyRecommendationRequest(name=name, tuning_job_id=tuning_job_id, display_name=display_name,
                                             licence_acknowledged=licence_acknowledged, request_id=str(uuid.uuid4()))
        return self._t.call(self._stub.ApplyRecommendation, req, idempotent=True, timeout=timeout)

    def compare(self, evaluations: Sequence[Any], *, filter: str = "", page_size: int = 0,
                timeout: Any = USE_DEFAULT) -> Comparison:
        """Metric deltas against the first evaluation and the examples whose outcome changed."""
        req = svc.CompareEvaluationsRequest(evaluations=[self._name(e) for e in evaluations], filter=filter,
                                            page_size=page_size)
        return self._t.call(self._stub.CompareEvaluations, req, idempotent=True, timeout=timeout)

    def watch(self, evaluation: Any, *, after: int = 0, reconnect: bool = True) -> Iterator[EvaluationEvent]:
        """Events from ``after`` on, live, until the evaluation ends (re-opened after a drop)."""
        name = self._name(evaluation)
        yield from follow(lambda last: self._stub.WatchEvaluation(
            svc.WatchEvaluationRequest(name=name, after_sequence_number=last)), after, reconnect)
