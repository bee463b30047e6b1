"""Evaluating a registered model version (wizard step 3 on a saved model): addressed by
alias (through the asyncio SDK), measured with its own stored weights against its base model, its recommendations
read from the tuning job that made it, and linked into the version's lineage and card
afterwards; a deleted version, another project's version and a missing one are refused
with the field named."""

from __future__ import annotations

import grpc
import pytest

import mtw
from mtw.evaluation.v1 import evaluation_pb2
from mtw.evaluation.v1 import evaluation_service_pb2 as epb
from mtw.registry.v1 import registered_model_pb2
from mtw.registry.v1 import registry_service_pb2 as rpb
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.slow

MODEL = "projects/alpha/models/genres-measured"
SUCCEEDED = 4


async def _create(registry, project: str = "alpha", **model) -> evaluation_pb2.Evaluation:
    return await registry.evaluations.CreateEvaluation(
        epb.CreateEvaluationRequest(parent=f"projects/{project}", evaluation=evaluation_pb2.Evaluation(**model)),
        metadata=registry.auth(project))


async def _finished(registry, name: str, timeout: float = 300) -> evaluation_pb2.Evaluation:
    async def ended():
        evaluation = await registry.evaluations.GetEvaluation(epb.GetEvaluationRequest(name=name),
                                                              metadata=registry.auth())
        return evaluation if evaluation.state in (4, 5, 7) else None

    return await wait_for(ended, timeout, interval=0.5)


async def _predictions(registry, name: str) -> dict[int, str]:
    page = await registry.evaluations.ListExampleResults(
        epb.ListExampleResultsRequest(parent=name, page_size=1000), metadata=registry.auth())
    return {e.row: e.prediction for e in page.example_results}


async def test_a_version_is_evaluated_through_its_alias_against_its_base_model(registry):
    await registry.stub.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(
        parent="projects/alpha", registered_model_id=MODEL.rsplit("/", 1)[1],
        registered_model=registered_model_pb2.RegisteredModel()), metadata=registry.auth())
    version = await registry.register(registry.classifier_job, MODEL)
    await registry.stub.SetAlias(rpb.SetAliasRequest(registered_model=MODEL, alias="candidate",
                                                     model_version=version.version_id), metadata=registry.auth())

    # Through the asyncio SDK, as a user names it: MODEL@ALIAS in the client's project.
    async with mtw.AsyncClient({"evaluation": registry.evaluation_endpoint}, registry.key, project="alpha") as client:
        by_alias = await client.evaluations.create(model_version="genres-measured@candidate", split="validation")
        by_job = await _create(registry, tuning_job=registry.classifier_job, split="validation")
        # The alias is resolved once: the evaluation names the version it measured.
        assert by_alias.model_version == version.name and by_alias.baseline_evaluation
        assert by_alias.dataset_version == version.lineage.dataset_version  # the data it was trained on
        events = [e async for e in client.evaluations.watch(by_alias)]
        assert events[-1].state_change.state == SUCCEEDED
        assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    done, of_job = await _finished(registry, by_alias.name), await _finished(registry, by_job.name)
    assert done.state == of_job.state == SUCCEEDED, (done.failure, of_job.failure)
    base = await _finished(registry, done.baseline_evaluation)
    assert base.state == SUCCEEDED and base.base_model == version.base_model, base.failure

    # The stored version is the job's model: the same prediction for every example.
    assert await _predictions(registry, done.name) == await _predictions(registry, of_job.name)
    done = await registry.evaluations.GetEvaluation(epb.GetEvaluationRequest(name=done.name),
                                                     metadata=registry.auth())
    accuracy = next(m for m in done.results.metrics if m.name == "accuracy")
    assert accuracy.HasField("baseline_value") and "base model" in done.results.summary

    listed = await registry.evaluations.ListEvaluations(
        epb.ListEvaluationsRequest(parent="projects/alpha", filter=f'model_version="{version.name}"'),
        metadata=registry.auth())
    assert [e.name for e in listed.evaluations] == [done.name]
    # Evaluations made after the registration are pushed to the registry once they have
    # ended, which links them: lineage, headline metrics, card.
    async def linked_version():
        found = await registry.stub.GetModelVersion(rpb.GetModelVersionRequest(name=version.name),
                                                    metadata=registry.auth())
        described = all(f"Evaluation `{e}` on the `validation` split." in found.model_card
                        for e in (done.name, of_job.name))
        return found if described and {done.name, of_job.name} <= set(found.lineage.evaluations) else None

    linked = await wait_for(linked_version, timeout=60)
    assert not set(version.lineage.evaluations) & {done.name, of_job.name}  # not known at registration
    assert linked.metrics["accuracy"] == pytest.approx(accuracy.value)  # same predictions, same accuracy
    card = await registry.stub.GetModelCard(rpb.GetModelCardRequest(name=version.name), metadata=registry.auth())
    assert card.markdown == linked.model_card
    # Telling the registry again changes nothing.
    again = await registry.stub.LinkEvaluation(rpb.LinkEvaluationRequest(parent="projects/alpha",
                                                                         evaluation=done.name), metadata=registry.auth())
    assert list(again.model_versions) == [version.name]
    assert (await registry.stub.GetModelVersion(rpb.GetModelVersionRequest(name=version.name),
                                                metadata=registry.auth())).etag == linked.etag

    # Recommendations read the curves of the job that made the version. They are made in
    # the background once the evaluation and its baseline have ended.
    async def recommendations():
        page = await registry.evaluations.ListRecommendations(
            epb.ListRecommendationsRequest(parent=done.name), metadata=registry.auth())
        return page.recommendations

    assert await wait_for(recommendations, timeout=60)
    print(f"model version {version.name}: {done.results.summary}")


async def _refused(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value


async def test_deleted_foreign_and_missing_versions_are_refused(registry):
    version = await registry.register(registry.classifier_job, MODEL, description="to be deleted")
    await registry.stub.DeleteModelVersion(rpb.DeleteModelVersionRequest(name=version.name), metadata=registry.auth())
    error = await _refused(_create(registry, model_version=version.name), grpc.StatusCode.FAILED_PRECONDITION)
    assert "deleted" in error.details()

    error = await _refused(_create(registry, project="beta", model_version=f"{MODEL}@candidate"),
                           grpc.StatusCode.INVALID_ARGUMENT)
    assert "evaluation.model_version" in error.details()
    error = await _refused(_create(registry, model_version=f"{MODEL}@nowhere"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "evaluation.model_version" in error.details() and "nowhere" in error.details()


async def test_linking_names_what_cannot_be_linked(registry):
    def link(evaluation: str, project: str = "alpha"):
        return registry.stub.LinkEvaluation(rpb.LinkEvaluationRequest(parent=f"projects/{project}",
                                                                      evaluation=evaluation),
                                            metadata=registry.auth(project))

    of_base = await _create(registry, base_model="baseModels/all-minilm-l6-v2",
                            dataset_version=registry.stack.versions["classification"], split="validation")
    error = await _refused(link(of_base.name), grpc.StatusCode.INVALID_ARGUMENT)
    assert "evaluation" in error.details() and "base model" in error.details()
    await _refused(link("projects/alpha/evaluations/nowhere"), grpc.StatusCode.NOT_FOUND)
    await _refused(link(of_base.name, project="beta"), grpc.StatusCode.NOT_FOUND)  # another project's
    error = await _refused(link("evaluations/x"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "evaluation" in error.details()
    await registry.evaluations.CancelEvaluation(epb.CancelEvaluationRequest(name=of_base.name),
                                                metadata=registry.auth())
