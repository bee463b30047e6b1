"""A SUCCEEDED job's follow-ups: the training service asks the evaluation service for the
final evaluation and the registry for a model version, on the project's behalf, with
retries — against real gRPC servers on loopback that stand in for those two services
and record what they were asked."""

from __future__ import annotations

import asyncio

import grpc
import pytest_asyncio

from mtw.common.v1 import job_state_pb2 as js
from mtw.evaluation.v1 import evaluation_pb2, evaluation_service_pb2_grpc
from mtw.registry.v1 import model_version_pb2, registered_model_pb2, registry_service_pb2_grpc
from mtw.training.v1 import hyperparameters_pb2 as hp
from services.training_svc.domain.model import Output
from services.training_svc.events import PgEventSink
from services.training_svc.scheduler import InMemoryScheduler

from .service_harness import brown_csv, start_stack, stop_stack

TOKEN = "internal-token-for-the-follow-up-tests"


class Peers(evaluation_service_pb2_grpc.EvaluationServiceServicer, registry_service_pb2_grpc.RegistryServiceServicer):
    """The evaluation and registry services as the training service sees them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, dict]] = []
        self.unavailable_once: set[str] = set()  # jobs whose first CreateEvaluation was refused
        self.models: set[str] = set()
        self.reject_evaluations = False

    def _note(self, method, request, context) -> dict:
        metadata = {k: v for k, v in context.invocation_metadata()}
        self.calls.append((method, request, metadata))
        return metadata

    async def CreateEvaluation(self, request, context):
        self._note("CreateEvaluation", request, context)
        if self.reject_evaluations:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the test split is empty")
        if request.evaluation.tuning_job not in self.unavailable_once:
            self.unavailable_once.add(request.evaluation.tuning_job)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "starting up")
        return evaluation_pb2.Evaluation(name=f"{request.parent}/evaluations/ev-{request.request_id[:8]}")

    async def CreateRegisteredModel(self, request, context):
        self._note("CreateRegisteredModel", request, context)
        name = f"{request.parent}/models/{request.registered_model_id}"
        self.models.add(name)
        return registered_model_pb2.RegisteredModel(name=name)

    async def GetModelVersion(self, request, context):
        self._note("GetModelVersion", request, context)
        versions = {
            "projects/alpha/models/genres@production": ("3", "baseModels/all-minilm-l6-v2"),
            "projects/alpha/models/prose@1": ("1", "baseModels/tiny-gpt2"),
        }
        if request.name not in versions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model version '{request.name}' not found")
        number, base = versions[request.name]
        model = request.name.split("@")[0]
        return model_version_pb2.ModelVersion(
            name=f"{model}/versions/{number}", base_model=base, state=model_version_pb2.MODEL_VERSION_STATE_ACTIVE,
            artifacts=model_version_pb2.ModelArtifacts(uri=f"s3://registry/{model}/versions/{number}"),
            lineage=model_version_pb2.ModelLineage(base_model=base, method=1))

    async def CreateModelVersion(self, request, context):
        self._note("CreateModelVersion", request, context)
        if request.parent not in self.models:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"registered model '{request.parent}' not found")
        return model_version_pb2.ModelVersion(name=f"{request.parent}/versions/1")


@pytest_asyncio.fixture(scope="module")
async def peers_stack(service_settings):
    peers = Peers()
    server = grpc.aio.server()
    evaluation_service_pb2_grpc.add_EvaluationServiceServicer_to_server(peers, server)
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(peers, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def succeed(run):
        sink = PgEventSink(run.database_url, run.project, run.job_id)
        try:
            await asyncio.to_thread(sink.succeed, Output(uri="s3://b/out", is_adapter_only=True, step=3), "done")
        finally:
            sink.close()

    stack = await start_stack(service_settings, InMemoryScheduler(succeed), internal_token=TOKEN,
                              evaluation_service_endpoint=f"127.0.0.1:{port}",
                              registry_service_endpoint=f"127.0.0.1:{port}", follow_up_retry_seconds=0.2)
    stack.versions["classification"] = await stack.upload(brown_csv(), "brown.csv")
    yield stack, peers
    await stop_stack(stack)
    await server.stop(0)


def _job_of(request) -> str:
    return request.evaluation.tuning_job if hasattr(request, "evaluation") and request.HasField("evaluation") \
        else getattr(request, "tuning_job", "")


async def _settled(stack, name: str, done, timeout: float = 20):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await stack.get(name)
        if done(job):
            return job
        assert asyncio.get_running_loop().time() < deadline, f"follow-ups did not settle: {job}"
        await asyncio.sleep(0.1)


async def test_final_evaluation_and_registration_after_success(peers_stack):
    stack, peers = peers_stack
    job = await stack.create(preset=hp.PRESET_QUICK, register_to_model="projects/alpha/models/genres")
    done = await _settled(stack, job.name, lambda j: j.model_version)
    assert done.state == js.JOB_STATE_SUCCEEDED
    assert done.evaluation.startswith("projects/alpha/evaluations/ev-")
    assert done.model_version == "projects/alpha/models/genres/versions/1" and not done.follow_up_error

    # Jobs of other tests share the database: keep this job's calls (and the model it made).
    calls = [c for c in peers.calls if _job_of(c[1]) == job.name or c[0] == "CreateRegisteredModel"]
    methods = [m for m, _, _ in calls]
    # UNAVAILABLE once → retried; the model did not exist → created, then the version made.
    assert methods == ["CreateEvaluation", "CreateEvaluation", "CreateModelVersion", "CreateRegisteredModel",
                       "CreateModelVersion"], methods
    first, retry = calls[0][1], calls[1][1]
    assert first.request_id == retry.request_id  # the same idempotency key on every attempt
    assert first.evaluation.tuning_job == job.name and first.evaluation.dataset_version == job.dataset_version
    version_request = calls[-1][1]
    assert version_request.tuning_job == job.name and list(version_request.evaluations) == [done.evaluation]
    for _, _, metadata in calls:  # on the project's behalf, with the internal token
        assert metadata["authorization"] == f"Bearer {TOKEN}" and metadata["x-mtw-project"] == "alpha"


async def test_a_final_error_stays_on_the_job_and_is_not_retried(peers_stack):
    stack, peers = peers_stack
    peers.reject_evaluations, peers.calls = True, []
    try:
        job = await stack.create(preset=hp.PRESET_QUICK)
        done = await _settled(stack, job.name, lambda j: j.follow_up_error)
        assert done.follow_up_error == "INVALID_ARGUMENT: the test split is empty" and not done.evaluation
        await asyncio.sleep(1)  # several scheduler passes
        assert [m for m, request, _ in peers.calls if _job_of(request) == job.name] == ["CreateEvaluation"]
    finally:
        peers.reject_evaluations = False


async def test_skip_final_evaluation_asks_for_nothing(peers_stack):
    stack, peers = peers_stack
    peers.calls = []
    job = await stack.create(preset=hp.PRESET_QUICK, skip_final_evaluation=True)
    await stack.wait_for(job.name, {js.JOB_STATE_SUCCEEDED})
    await asyncio.sleep(1)
    assert not [c for c in peers.calls if _job_of(c[1]) == job.name] and not (await stack.get(job.name)).evaluation


async def test_continue_training_from_a_registered_model_version(peers_stack):
    import grpc as g

    from mtw.training.v1 import tuning_job_pb2

    stack, _peers = peers_stack
    lineage = tuning_job_pb2.TuningJobLineage(continued_from_model_version="projects/alpha/models/genres@production")
    job = await stack.create(preset=hp.PRESET_QUICK, lineage=lineage, skip_final_evaluation=True)
    # The alias is resolved and stored as the version; training starts from its weights.
    assert job.lineage.continued_from_model_version == "projects/alpha/models/genres/versions/3"
    spec = await stack.app.store.get_spec("alpha", job.name.rsplit("/", 1)[1])
    assert spec.init_weights_uri == "s3://registry/projects/alpha/models/genres/versions/3"

    for name, code, words in (("projects/alpha/models/prose@1", g.StatusCode.FAILED_PRECONDITION, "tiny-gpt2"),
                              ("projects/alpha/models/nope@1", g.StatusCode.NOT_FOUND, "nope")):
        lineage = tuning_job_pb2.TuningJobLineage(continued_from_model_version=name)
        try:
            await stack.create(preset=hp.PRESET_QUICK, lineage=lineage)
        except g.aio.AioRpcError as exc:
            assert exc.code() == code and words in exc.details(), exc.details()
        else:
            raise AssertionError(f"{name} was accepted")
