"""Work the training service does for a SUCCEEDED job after its run: the final evaluation
(unless ``skip_final_evaluation``) and the registration of the output as a model version
(when ``register_to_model`` is set).

Runs in the scheduling loop, calls the evaluation and registry services over gRPC on the
job's project's behalf (service-to-service credentials: there is no caller's key by
then), and is safe to repeat: each call carries an idempotency key derived from the job,
so a retry after a crash returns what the first call made. Failures the other service
may get over (UNAVAILABLE, timeouts) are retried with back-off; the others are final and
stay visible on the job as ``follow_up_error``.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from mtw.evaluation.v1 import evaluation_pb2, evaluation_service_pb2, evaluation_service_pb2_grpc
from mtw.registry.v1 import registered_model_pb2, registry_service_pb2, registry_service_pb2_grpc
from services.common.auth import service_metadata
from services.common.peers import Channels
from services.common.telemetry import continued_span
from services.training_svc.domain.model import TuningJob
from services.training_svc.settings import TrainingSettings
from services.training_svc.store import TrainingStore

log = logging.getLogger(__name__)

SERVICE = "training"
RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
           grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
MAX_ATTEMPTS = 30
MAX_BACKOFF_SECONDS = 600.0


def idempotency_key(job_name: str, purpose: str) -> str:
    """The same UUID for the same job and purpose, on every attempt."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mtw:{purpose}:{job_name}"))


class FollowUps:
    def __init__(self, settings: TrainingSettings, store: TrainingStore, peers: Channels) -> None:
        self.settings = settings
        self.store = store
        evaluation, registry = peers.get(settings.evaluation_service_endpoint), peers.get(
            settings.registry_service_endpoint)
        self._evaluations = evaluation_service_pb2_grpc.EvaluationServiceStub(evaluation) if evaluation else None
        self._registry = registry_service_pb2_grpc.RegistryServiceStub(registry) if registry else None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.internal_token) and (self._evaluations is not None or self._registry is not None)

    async def run_pending(self) -> int:
        """Does the follow-ups that are due; returns how many jobs were completed."""
        if not self.enabled:
            return 0
        done = 0
        jobs = await self.store.pending_follow_ups(evaluate=self._evaluations is not None,
                                                   register=self._registry is not None)
        for job, traceparent in jobs:
            # In the trace of the request that created the job, like its run.
            with continued_span("mtw.training", "training.follow_up", traceparent, {"mtw.job": job.name}):
                try:
                    evaluation = await self._evaluate(job)
                    model_version = await self._register(job, evaluation)
                except grpc.aio.AioRpcError as exc:
                    await self._failed(job, exc)
                    continue
            await self.store.follow_up_done(job.project, job.job_id, evaluation=evaluation,
                                            model_version=model_version)
            done += 1
        return done

    def _metadata(self, job: TuningJob):
        return service_metadata(self.settings.internal_token, job.project, SERVICE)

    async def _evaluate(self, job: TuningJob) -> str:
        if job.evaluation or job.skip_final_evaluation or self._evaluations is None:
            return job.evaluation
        created = await self._evaluations.CreateEvaluation(
            evaluation_service_pb2.CreateEvaluationRequest(
                parent=f"projects/{job.project}",
                evaluation=evaluation_pb2.Evaluation(
                    display_name=f"final evaluation of {job.display_name or job.job_id}",
                    tuning_job=job.name, dataset_version=job.dataset_version),
                request_id=idempotency_key(job.name, "final-evaluation"),
            ),
            metadata=self._metadata(job), timeout=60,
        )
        log.info("%s: final evaluation %s", job.name, created.name)
        return created.name

    async def _register(self, job: TuningJob, evaluation: str) -> str:
        if not job.register_to_model or job.model_version or self._registry is None:
            return job.model_version
        request = registry_service_pb2.CreateModelVersionRequest(
            parent=job.register_to_model, tuning_job=job.name,
            description=f"Trained by {job.name}.", evaluations=[evaluation] if evaluation else [],
            request_id=idempotency_key(job.name, "register"),
        )
        try:
            version = await self._registry.CreateModelVersion(request, metadata=self._metadata(job), timeout=300)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            await self._create_model(job)
            version = await self._registry.CreateModelVersion(request, metadata=self._metadata(job), timeout=300)
        log.info("%s: registered as %s", job.name, version.name)
        return version.name

    async def _create_model(self, job: TuningJob) -> None:
        model_id = job.register_to_model.rsplit("/", 1)[1]
        try:
            await self._registry.CreateRegisteredModel(
                registry_service_pb2.CreateRegisteredModelRequest(
                    parent=f"projects/{job.project}", registered_model_id=model_id,
                    registered_model=registered_model_pb2.RegisteredModel(display_name=model_id)),
                metadata=self._metadata(job), timeout=60,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise

    async def _failed(self, job: TuningJob, exc: grpc.aio.AioRpcError) -> None:
        final = exc.code() not in RETRIED
        error = f"{exc.code().name}: {exc.details()}"
        attempts = await self.store.follow_up_failed(
            job.project, job.job_id, error, final=final, max_attempts=MAX_ATTEMPTS,
            first_backoff_seconds=self.settings.follow_up_retry_seconds, max_backoff_seconds=MAX_BACKOFF_SECONDS)
        given_up = final or attempts >= MAX_ATTEMPTS
        log.warning("%s: follow-up failed (attempt %d%s): %s", job.name, attempts,
                    ", not retried" if given_up else "", error)
